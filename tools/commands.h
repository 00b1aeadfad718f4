/* SPDX-License-Identifier: MIT */
/* The rdmamig CLI's subcommands: one function each, argv[0] is the command. */
#ifndef RMIG_TOOLS_COMMANDS_H
#define RMIG_TOOLS_COMMANDS_H

int cmd_backends(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int bench_transport(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int bench_migrate(int argc, char **argv);
int bench_hygiene(int argc, char **argv);
int cmd_topo(int argc, char **argv);

/* Parse "4K", "64M", "1G" (binary units) into bytes; 0 on error. */
unsigned long long parse_size(const char *s);

#endif
