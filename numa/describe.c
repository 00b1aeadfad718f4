/* SPDX-License-Identifier: MIT */
/* A plan in words: text for people, JSON for scripts. */
#define _GNU_SOURCE
#include "placement.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

/* snprintf that keeps counting past the end, so the caller learns the full length. */
struct out {
	char *buf;
	size_t cap, n;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(o->n < o->cap ? o->buf + o->n : NULL, o->n < o->cap ? o->cap - o->n : 0,
		      fmt, ap);
	va_end(ap);
	if (k > 0)
		o->n += (size_t)k;
}

static void put_json_str(struct out *o, const char *s)
{
	if (!s) {
		put(o, "null");
		return;
	}
	put(o, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			put(o, "\\%c", c);
		else if (c < 0x20)
			put(o, "\\u%04x", c);
		else
			put(o, "%c", c);
	}
	put(o, "\"");
}

static void describe_text(const struct rmig_placement *p, struct out *o)
{
	put(o, "topology: %s (%s)\n", p->source, p->summary);
	put(o, "nic:      %s\n", p->nic_desc);
	put(o, "locality: %s\n", p->locality);
	put(o, "guest:    %s\n", p->guest);
	put(o, "vcpus:    %s\n", p->vcpus_desc);
	if (p->allowed_desc[0])
		put(o, "affinity: %s\n", p->allowed_desc);
	if (p->node >= 0)
		put(o, "buffers:  node %d: %s\n", p->node, p->node_why);
	else
		put(o, "buffers:  no node: %s\n", p->node_why);
	for (unsigned i = 0; i < p->nworkers; i++)
		put(o, "worker %u: %s\n", i, p->w[i].why);
	if (rmig_placement_notice(p))
		put(o, "notice:   %s\n", p->notice);
}

static void describe_json(const struct rmig_placement *p, struct out *o)
{
	char cpus[128];

	put(o, "{\"topology\":");
	put_json_str(o, p->source);
	put(o, ",\"summary\":");
	put_json_str(o, p->summary);
	put(o, ",\"nic\":");
	put_json_str(o, p->nic[0] ? p->nic : NULL);
	put(o, ",\"nic_description\":");
	put_json_str(o, p->nic_desc);
	put(o, ",\"nic_cpus\":");
	if (p->anchor) {
		hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), p->anchor->cpuset);
		put_json_str(o, cpus);
	} else {
		put(o, "null");
	}
	put(o, ",\"locality\":");
	put_json_str(o, p->locality);
	put(o, ",\"guest_node\":%d,\"guest\":", p->guest_node);
	put_json_str(o, p->guest);
	hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), p->vcpus);
	put(o, ",\"vcpus\":");
	put_json_str(o, cpus);
	hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), p->allowed);
	put(o, ",\"allowed_cpus\":");
	put_json_str(o, cpus);
	put(o, ",\"node\":%d,\"node_why\":", p->node);
	put_json_str(o, p->node_why);
	put(o, ",\"workers\":[");
	for (unsigned i = 0; i < p->nworkers; i++) {
		const struct place_worker *w = &p->w[i];

		put(o, "%s{\"index\":%u,\"cpu\":%d,\"core\":%d,\"package\":%d,\"node\":%d,\"why\":",
		    i ? "," : "", i, w->cpu, w->core, w->package, w->node);
		put_json_str(o, w->why);
		put(o, "}");
	}
	put(o, "],\"notice\":");
	put_json_str(o, rmig_placement_notice(p));
	put(o, "}\n");
}

int rmig_placement_describe(const struct rmig_placement *p, char *buf, size_t len,
			    unsigned flags)
{
	struct out o = { .buf = buf, .cap = buf ? len : 0 };

	if (!p || (flags & ~(unsigned)RMIG_PLACEMENT_JSON))
		return -EINVAL;
	if (buf && len)
		buf[0] = '\0';
	if (flags & RMIG_PLACEMENT_JSON)
		describe_json(p, &o);
	else
		describe_text(p, &o);
	return (int)o.n;
}
