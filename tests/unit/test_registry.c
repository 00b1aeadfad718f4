/* SPDX-License-Identifier: MIT */
/* The registry and the generic layer: selection, stubs, bounds checks. */
#include "testutil.h"
#include <rdmamig/transport.h>

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void test_lists_tcp(void)
{
	int n = rmig_backend_count(), found = 0;

	CU_ASSERT(n >= 1);
	for (int i = 0; i < n; i++)
		found |= !strcmp(rmig_backend_name(i), "tcp");
	CU_ASSERT(found);
	CU_ASSERT_PTR_NULL(rmig_backend_name(n));
	CU_ASSERT_PTR_NULL(rmig_backend_name(-1));
}

/* Every spec names a compiled backend (itself or BACKEND/PROVIDER), every
 * backend is reached by a spec, and a spec's probe knows it (no -ENOENT). */
static void test_specs_cover_backends(void)
{
	char why[RMIG_ERR_MAX];
	int nspecs = 0;

	for (int i = 0; rmig_backend_spec(i); i++, nspecs++) {
		const char *spec = rmig_backend_spec(i);
		int known = 0;

		for (int b = 0; b < rmig_backend_count(); b++) {
			size_t n = strlen(rmig_backend_name(b));
			known |= !strncmp(spec, rmig_backend_name(b), n) &&
				 (spec[n] == 0 || spec[n] == '/');
		}
		CU_ASSERT(known);
		CU_ASSERT_NOT_EQUAL(rmig_backend_probe(spec, why, sizeof(why)), -ENOENT);
	}
	CU_ASSERT(nspecs >= rmig_backend_count());
	for (int b = 0; b < rmig_backend_count(); b++) {
		int reached = 0;

		for (int i = 0; rmig_backend_spec(i); i++)
			reached |= !strncmp(rmig_backend_spec(i), rmig_backend_name(b),
					    strlen(rmig_backend_name(b)));
		CU_ASSERT(reached);
	}
	CU_ASSERT_PTR_NULL(rmig_backend_spec(-1));
	CU_ASSERT_PTR_NULL(rmig_backend_spec(nspecs));
}

static void test_tcp_always_runs(void)
{
	char why[RMIG_ERR_MAX];

	CU_ASSERT_EQUAL(rmig_backend_probe("tcp", why, sizeof(why)), 0);
}

static void test_unknown_backend(void)
{
	struct rmig_ep *ep = NULL;
	char why[RMIG_ERR_MAX];

	CU_ASSERT_EQUAL(rmig_connect("carrier-pigeon", "127.0.0.1:1", NULL, &ep), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "carrier-pigeon"));
	CU_ASSERT_EQUAL(rmig_backend_probe("carrier-pigeon", why, sizeof(why)), -ENOENT);
	CU_ASSERT_PTR_NULL(ep);
}

static void test_best_is_runnable(void)
{
	char why[RMIG_ERR_MAX];
	const char *best = rmig_backend_best();

	CU_ASSERT_PTR_NOT_NULL_FATAL(best);
	CU_ASSERT_EQUAL(rmig_backend_probe(best, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(rmig_backend_probe("auto", why, sizeof(why)), 0);
}

/* A backend that wires nothing: every op must answer -EOPNOTSUPP. */
static const struct rmig_transport_ops empty_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "empty",
};

static void test_missing_ops_are_eopnotsupp(void)
{
	struct rmig_ep ep = { .ops = &empty_ops };
	struct rmig_completion c;
	struct rmig_mr *mr;
	char buf[8];

	CU_ASSERT_EQUAL(rmig_send(&ep, "x", 1), -EOPNOTSUPP);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_ep_error(&ep), "does not support send"));
	CU_ASSERT_EQUAL(rmig_recv(&ep, buf, sizeof(buf), 0), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(rmig_poll(&ep, &c, 1, 0), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(rmig_reg_mr(&ep, buf, sizeof(buf), 0, &mr), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(rmig_local_addr(&ep, buf, sizeof(buf)), -EOPNOTSUPP);
	struct rmig_mr lmr = { .ep = &ep, .addr = buf, .len = sizeof(buf),
			       .access = RMIG_ACCESS_LOCAL_WRITE };
	struct rmig_rkey rk = { .len = 8, .flags = RMIG_ACCESS_REMOTE_READ };
	struct rmig_read r = { &lmr, 0, &rk, 0, 8 };
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &r, 1, 1), -EOPNOTSUPP);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_ep_error(&ep), "does not support read_batch"));
	/* A table of an older size (before read_batch) lacks the op. */
	struct rmig_transport_ops old = { .size = offsetof(struct rmig_transport_ops, read_batch),
					  .name = "old", .read_batch = (void *)1 };
	ep.ops = &old;
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &r, 1, 1), -EOPNOTSUPP);
	ep.ops = &empty_ops;
	ep.listener = 1;
	CU_ASSERT_EQUAL(rmig_accept(&ep, 0, (struct rmig_ep **)&mr), -EOPNOTSUPP);
}

/* The generic layer refuses bad writes before any backend sees them. */
static int writes_seen;
static int count_write(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		       uint64_t id)
{
	(void)ep; (void)w; (void)id;
	writes_seen += (int)n;
	return 0;
}
static int sends_seen;
static int count_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	(void)ep; (void)buf; (void)len;
	sends_seen++;
	return 0;
}
static int reads_seen;
static int count_read(struct rmig_ep *ep, const struct rmig_read *r, unsigned n, uint64_t id)
{
	(void)ep; (void)r; (void)id;
	reads_seen += (int)n;
	return 0;
}
static const struct rmig_transport_ops write_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "counting",
	.write_batch = count_write,
	.send = count_send,
	.read_batch = count_read,
};

static void test_write_bounds_checked(void)
{
	struct rmig_ep ep = { .ops = &write_ops };
	char local[100];
	struct rmig_mr lmr = { .ep = &ep, .addr = local, .len = sizeof(local) };
	struct rmig_rkey rk = { .len = 50, .flags = RMIG_ACCESS_REMOTE_WRITE };
	struct rmig_write ok = { &lmr, 0, &rk, 10, 40 };
	struct rmig_write w;

	writes_seen = 0;
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &ok, 1, 1), 0);
	CU_ASSERT_EQUAL(writes_seen, 1);
	w = ok; w.roff = 11;               /* one past the remote end */
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &w, 1, 1), -ERANGE);
	w = ok; w.roff = UINT64_MAX - 5;   /* overflowing offset */
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &w, 1, 1), -ERANGE);
	w = ok; w.loff = 61;               /* past the local end */
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &w, 1, 1), -ERANGE);
	w = ok; w.len = 0;
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &w, 1, 1), -EINVAL);
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &ok, 0, 1), -EINVAL);
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &ok, RMIG_BATCH_MAX + 1, 1), -EINVAL);
	rk.flags = 0;                      /* region not granted for writing */
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, &ok, 1, 1), -EACCES);
	/* One bad write in a batch: nothing of the batch is posted. */
	struct rmig_write two[2] = { ok, ok };
	rk.flags = RMIG_ACCESS_REMOTE_WRITE;
	two[1].roff = 49;
	CU_ASSERT_EQUAL(rmig_write_batch(&ep, two, 2, 1), -ERANGE);
	CU_ASSERT_EQUAL(writes_seen, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_ep_error(&ep), "outside"));
}

/* Reads: bounds both ways, REMOTE_READ in the key, LOCAL_WRITE on the destination. */
static void test_read_checked(void)
{
	struct rmig_ep ep = { .ops = &write_ops };
	char local[100];
	struct rmig_mr lmr = { .ep = &ep, .addr = local, .len = sizeof(local),
			       .access = RMIG_ACCESS_LOCAL_WRITE };
	struct rmig_rkey rk = { .len = 50, .flags = RMIG_ACCESS_REMOTE_READ };
	struct rmig_read ok = { &lmr, 0, &rk, 10, 40 };
	struct rmig_read r;

	reads_seen = 0;
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &ok, 1, 1), 0);
	CU_ASSERT_EQUAL(reads_seen, 1);
	r = ok; r.roff = 11;
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &r, 1, 1), -ERANGE);
	r = ok; r.roff = UINT64_MAX - 5;
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &r, 1, 1), -ERANGE);
	r = ok; r.loff = 61;
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &r, 1, 1), -ERANGE);
	r = ok; r.len = 0;
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &r, 1, 1), -EINVAL);
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &ok, 0, 1), -EINVAL);
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &ok, RMIG_BATCH_MAX + 1, 1), -EINVAL);
	rk.flags = RMIG_ACCESS_REMOTE_WRITE; /* writable is not readable */
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &ok, 1, 1), -EACCES);
	rk.flags = RMIG_ACCESS_REMOTE_READ;
	lmr.access = RMIG_ACCESS_LOCAL;      /* destination not registered for it */
	CU_ASSERT_EQUAL(rmig_read_batch(&ep, &ok, 1, 1), -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_ep_error(&ep), "RMIG_ACCESS_LOCAL_WRITE"));
	CU_ASSERT_EQUAL(reads_seen, 1);
}

static void test_oversize_message_refused(void)
{
	struct rmig_ep ep = { .ops = &write_ops };
	static char big[RMIG_MSG_MAX + 1];

	sends_seen = 0;
	CU_ASSERT_EQUAL(rmig_send(&ep, big, RMIG_MSG_MAX), 0);
	CU_ASSERT_EQUAL(rmig_send(&ep, big, sizeof(big)), -EMSGSIZE);
	CU_ASSERT_EQUAL(sends_seen, 1);
}

static const CU_TestInfo tests[] = {
	{ "lists tcp", test_lists_tcp },
	{ "specs cover the backends", test_specs_cover_backends },
	{ "tcp always runs", test_tcp_always_runs },
	{ "unknown backend", test_unknown_backend },
	{ "best is runnable", test_best_is_runnable },
	{ "missing ops are -EOPNOTSUPP", test_missing_ops_are_eopnotsupp },
	{ "writes bounds-checked", test_write_bounds_checked },
	{ "reads checked", test_read_checked },
	{ "oversize message refused", test_oversize_message_refused },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("registry", NULL, NULL, tests);
}
