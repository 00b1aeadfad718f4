/* SPDX-License-Identifier: MIT */
/*
 * The minimal framework of docs/plugin-abi.md, built and run by ctest so
 * the document cannot drift from the ABI.  One 8 MiB RAM block, one
 * pre-copy round, a final round after a (pretend) pause, a device-state
 * string on the stream, commit; the destination checks what it received.
 * Usage: minimal_framework PATH-TO-librdmamig.so
 */
#define _GNU_SOURCE
#include <rdmamig/plugin.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define RAM (8u << 20)
static const char device[] = "cpu0: rip=0xfff0";
/* Both ends' pre-shared key (a real framework reads it from a file). */
static const char key[] = "0123456789abcdef0123456789abcdef";

static int destination(const struct rmig_plugin_ops *ops, int addr_fd)
{
	struct rmig_plugin_config cfg = { .size = sizeof(cfg), .backend = "tcp",
					  .addr = "127.0.0.1:0", .flags = RMIG_CFG_DEST_ZEROED,
					  .psk = key, .psk_len = sizeof(key) - 1 };
	struct rmig_mig_listener *l;
	struct rmig_block_info bi;
	struct rmig_mig *s;
	char addr[64], dev[64] = "";
	long n, got = 0;

	if (ops->listen(&cfg, &l) || ops->listen_addr(l, addr, sizeof(addr)))
		return 1;
	if (write(addr_fd, addr, sizeof(addr)) != sizeof(addr))
		return 1;
	if (ops->accept(l, 10000, &s))            /* the source's offer arrives */
		return 1;
	ops->load_block(s, 0, &bi);               /* "pc.ram", 8 MiB */
	void *ram = mmap(NULL, bi.len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		return ops->load_refuse(s, -12, "no memory for the guest"), 1;
	ops->load_register_block(s, 0, ram);
	if (ops->load_grant(s))                   /* yes: rkeys go to the source */
		return 1;
	while ((n = ops->stream_read(s, dev + got, sizeof(dev) - 1 - got, 10000)) > 0)
		got += n;                         /* device state, until END */
	if (n < 0 || ops->load_commit(s))
		return fprintf(stderr, "destination: %s\n", ops->error(s)), 1;
	/* The guest is ours: resume it.  Here: check it. */
	const unsigned char *p = ram;
	int ok = !strcmp(dev, device) && p[0] == 1 && p[RAM - 1] == 2 && p[4096] == 3;
	printf("destination: device state '%s', memory %s\n", dev, ok ? "as sent" : "WRONG");
	fflush(stdout);
	ops->close(s);
	ops->listen_close(l);
	munmap(ram, bi.len);
	return !ok;
}

static int source(const struct rmig_plugin_ops *ops, const char *addr)
{
	struct rmig_plugin_config cfg = { .size = sizeof(cfg), .backend = "tcp", .addr = addr,
					  .downtime_limit_ms = 300, .psk = key,
					  .psk_len = sizeof(key) - 1 };
	struct rmig_round_stats rs;
	struct rmig_mig *s;
	unsigned char *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ram[0] = 1;
	ram[RAM - 1] = 2;
	if (ops->open(&cfg, &s) || ops->add_ram_block(s, "pc.ram", ram, RAM) < 0)
		return 1;
	if (ops->setup(s))                        /* connect, offer, reservation */
		return fprintf(stderr, "source: %s\n", ops->error(s)), 1;
	struct rmig_page_range all = { .block = 0, .offset = 0, .len = RAM };
	ops->round_start(s, 0);                   /* round 0: every page */
	ops->save_pages(s, &all, 1);
	ops->round_end(s, &rs);
	ram[4096] = 3;                            /* the guest dirties a page */
	/* ... pause the vCPUs ... */
	ops->round_start(s, RMIG_ROUND_FINAL);    /* stop-and-copy */
	ops->save_page(s, 0, 4096);
	ops->round_end(s, &rs);
	ops->stream_write(s, device, sizeof(device));
	if (ops->finish(s))                       /* commit, or roll back */
		return fprintf(stderr, "source: %s; resuming here\n", ops->error(s)), 1;
	printf("source: committed in state %s\n", ops->state_name(ops->state(s)));
	ops->close(s);
	munmap(ram, RAM);
	return 0;
}

int main(int argc, char **argv)
{
	void *lib = dlopen(argc > 1 ? argv[1] : "librdmamig.so.0", RTLD_NOW);
	rmig_plugin_entry_fn entry = lib ? (rmig_plugin_entry_fn)dlsym(lib, RMIG_PLUGIN_ENTRY) : NULL;
	const struct rmig_plugin_ops *ops = entry ? entry(RMIG_PLUGIN_ABI_VERSION) : NULL;
	char addr[64];
	int fds[2], st, rc;

	if (!ops || ops->size < sizeof(*ops))
		return fprintf(stderr, "not an rdmamig plugin of ABI %d\n", RMIG_PLUGIN_ABI_VERSION), 1;
	fprintf(stderr, "ABI %d host: the library's table has %zu bytes, this host reads %zu\n",
		RMIG_PLUGIN_ABI_VERSION, ops->size, sizeof(*ops));
	if (pipe(fds))
		return 1;
	pid_t pid = fork();
	if (pid == 0)
		_exit(destination(ops, fds[1]));
	if (read(fds[0], addr, sizeof(addr)) != sizeof(addr))
		return 1;
	rc = source(ops, addr);
	waitpid(pid, &st, 0);
	return rc || !WIFEXITED(st) || WEXITSTATUS(st);
}
