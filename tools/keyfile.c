/* SPDX-License-Identifier: MIT */
/*
 * --key-file / RMIG_KEY_FILE / --insecure for every command that connects:
 * the pre-shared key both ends authenticate with (docs/security.md).
 */
#define _GNU_SOURCE
#include "commands.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_HOWTO "head -c 32 /dev/urandom > FILE; chmod 600 FILE"

/* Read the whole key file: a regular file, owner-only, 16..1024 bytes. */
static int key_load(const char *cmd, const char *path, struct cli_key *k)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		fprintf(stderr, "rdmamig %s: cannot open the key file %s: %s (create one: %s)\n",
			cmd, path, strerror(errno), KEY_HOWTO);
		return 2;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "rdmamig %s: the key file %s is not a regular file (create one: %s)\n",
			cmd, path, KEY_HOWTO);
		close(fd);
		return 2;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		fprintf(stderr, "rdmamig %s: the key file %s is open to group or others (mode %03o): chmod 600 %s\n",
			cmd, path, (unsigned)(st.st_mode & 0777), path);
		close(fd);
		return 2;
	}
	n = read(fd, k->buf, sizeof(k->buf));
	if (n == (ssize_t)sizeof(k->buf)) {
		char extra;
		if (read(fd, &extra, 1) == 1)
			n = -2;
	}
	close(fd);
	if (n < RMIG_PSK_MIN) {
		if (n == -2)
			fprintf(stderr, "rdmamig %s: the key file %s is longer than %d bytes: use a shorter random key (%s)\n",
				cmd, path, RMIG_PSK_MAX, KEY_HOWTO);
		else
			fprintf(stderr, "rdmamig %s: the key file %s holds %zd bytes, a key needs at least %d: %s\n",
				cmd, path, n < 0 ? (ssize_t)0 : n, RMIG_PSK_MIN, KEY_HOWTO);
		memset(k->buf, 0, sizeof(k->buf));
		return 2;
	}
	k->len = (size_t)n;
	return 0;
}

int cli_key_resolve(const char *cmd, const char *path, int insecure, int may_generate,
		    struct cli_key *k)
{
	const char *env = getenv("RMIG_KEY_FILE");

	memset(k, 0, sizeof(*k));
	if (insecure && path) {
		fprintf(stderr, "rdmamig %s: --insecure and --key-file exclude each other\n", cmd);
		return 2;
	}
	if (insecure) {
		k->insecure = 1;
		return 0;
	}
	if (!path && env && *env)
		path = env;
	if (path)
		return key_load(cmd, path, k);
	if (may_generate)
		return 0;
	fprintf(stderr, "rdmamig %s: no key: give both ends the same --key-file FILE (or RMIG_KEY_FILE; %s), or --insecure to accept unauthenticated peers\n",
		cmd, KEY_HOWTO);
	return 2;
}

void cli_key_opts(const struct cli_key *k, struct rmig_ep_opts *o)
{
	o->psk = k->len ? k->buf : NULL;
	o->psk_len = k->len;
	o->flags |= k->insecure ? RMIG_EP_INSECURE : 0;
}
