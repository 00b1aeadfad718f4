/* SPDX-License-Identifier: MIT */
/*
 * RMIG_EXPORT marks the library's public functions.  librdmamig is built
 * with hidden visibility by default (-fvisibility=hidden) and
 * RMIG_BUILDING_LIBRARY: only what the public headers mark leaves the
 * library, and librdmamig.map lists the same names (a ctest checks both).
 */
#ifndef RDMAMIG_EXPORT_H
#define RDMAMIG_EXPORT_H

#if defined(RMIG_BUILDING_LIBRARY) && defined(__GNUC__)
#define RMIG_EXPORT __attribute__((visibility("default")))
#else
#define RMIG_EXPORT
#endif

#endif
