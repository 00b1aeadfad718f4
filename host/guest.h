/* SPDX-License-Identifier: MIT */
/* The guest of the reference host: memory, vCPU threads, page hashes. */
#ifndef RMIG_HOST_GUEST_H
#define RMIG_HOST_GUEST_H

#include "host.h"
#include <pthread.h>
#include <stdint.h>

#define GUEST_PAGE 4096u

struct guest;

struct vcpu {
	struct guest *g;
	pthread_t thread;
	unsigned id;
	uint64_t counter;         /* written into pages; part of device state */
	uint64_t rng;
};

struct guest {
	uint8_t *mem;
	uint64_t size;
	int memfd;
	enum host_mem kind;
	uint64_t map_len;
	/* vCPUs: lock guards pause_req, paused, stop; cond signals changes. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pause_req, paused, stop;
	unsigned nvcpus;
	struct vcpu *vcpus;
	uint64_t rate;            /* bytes/s over all vCPUs */
	enum host_pattern pattern;
	int running;
};

int guest_create(struct guest *g, uint64_t size, enum host_mem kind, int fill,
		 char *why, size_t whylen);
void guest_destroy(struct guest *g);
int guest_start(struct guest *g, unsigned nvcpus, uint64_t rate, enum host_pattern p);
/* Wait until every vCPU is parked (deadline 2 s). */
int guest_pause(struct guest *g);
void guest_resume(struct guest *g);
void guest_stop(struct guest *g);
/* 64-bit hash of each page into out[npages]. */
void guest_hash_pages(const uint8_t *mem, uint64_t size, uint64_t *out);
uint64_t guest_hash_all(const uint8_t *mem, uint64_t size);

#endif
