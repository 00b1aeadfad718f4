/* SPDX-License-Identifier: MIT */
/*
 * librdmamig.so is made of its layers (common, transport, numa, stream,
 * plugin: one static library each, see CMakeLists.txt).  This file holds
 * what belongs to the library as a whole rather than to one layer.
 */
#include <rdmamig/rdmamig.h>

const char *rmig_version(void)
{
	return RMIG_VERSION_STRING;
}
