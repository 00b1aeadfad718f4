/* SPDX-License-Identifier: MIT */
/*
 * The library's only way to say something: the host's log callback
 * (rmig_set_log, the plugin table's set_log).  Nothing is printed when the
 * host has set none.  Internal to librdmamig (not installed).
 */
#ifndef RMIG_COMMON_LOG_H
#define RMIG_COMMON_LOG_H

#include <rdmamig/rdmamig.h>

/* 1 if the host has set a callback (skip formatting otherwise). */
int rmig_log_enabled(void);
void rmig_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
