/* SPDX-License-Identifier: MIT */
/* The ops table each compiled backend exports to the registry. */
#ifndef RMIG_TRANSPORT_BACKENDS_H
#define RMIG_TRANSPORT_BACKENDS_H

#include <rdmamig/transport.h>

extern const struct rmig_transport_ops rmig_tcp_ops;
#ifdef RMIG_HAVE_OFI
extern const struct rmig_transport_ops rmig_ofi_ops;
#endif
#ifdef RMIG_HAVE_VERBS
extern const struct rmig_transport_ops rmig_verbs_ops;
#endif

#endif
