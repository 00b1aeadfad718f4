/* SPDX-License-Identifier: MIT */
/*
 * What a host sets in its own environment before it first uses the ofi
 * backend (libfabric reads these only from the environment; the library
 * never sets them itself).  The CLI and the test programs call this first
 * thing; a value already in the environment wins.  docs/plugin-abi.md.
 */
#ifndef RMIG_COMMON_OFI_ENV_H
#define RMIG_COMMON_OFI_ENV_H

#include <stdlib.h>

static inline void rmig_ofi_env_defaults(void)
{
	/* ofi_rxm's bounce buffers (defaults 128 x 16 KiB per connection,
	 * ~120 MB touched per endpoint pair): control messages are few. */
	setenv("FI_OFI_RXM_MSG_RX_SIZE", "32", 0);
	setenv("FI_OFI_RXM_BUFFER_SIZE", "4096", 0);
	/* ofi_rxm sizes its CQ by the universe size (default 256): beyond
	 * Soft-RoCE's max_cqe.  An rdmamig endpoint has one peer. */
	setenv("FI_UNIVERSE_SIZE", "16", 0);
	/* The MR cache keeps closed regions registered (the peer could still
	 * write into deregistered memory): least access. */
	setenv("FI_MR_CACHE_MAX_COUNT", "0", 0);
}

#endif
