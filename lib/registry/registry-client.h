/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/registry: the HTTP layer shared by client.c and image.c. */
#ifndef KMM_REGISTRY_CLIENT_H
#define KMM_REGISTRY_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kmm/shared-buf.h"
#include "kmm/registry.h"
#include "lib/registry/registry-internal.h"

struct kmm_response {
	void *curl; /* the handle, for the write callback */
	long status;
	char *content_type;
	char *digest; /* Docker-Content-Digest */
	char *www_authenticate;
	struct kmm_buf body;	 /* small bodies: manifests, tokens, error documents */
	int fd;			 /* >= 0: 2xx bodies are written here (blobs) ... */
	struct kmm_digester *dg; /* ... hashed here ... */
	uint64_t written;	 /* ... counted here ... */
	uint64_t max;		 /* ... and capped here */
	bool overflow;
	int write_errno;
};

/* body_max caps resp->body; fd < 0 for in-memory responses. */
void kmm_response_init(struct kmm_response *resp, size_t body_max, int fd, uint64_t blob_max);
void kmm_response_done(struct kmm_response *resp);

/*
 * method ("GET"/"HEAD") on /v2/<repository>/<kind>/<reference>, answering one
 * 401 challenge (Basic or Bearer) and retrying once. Returns < 0 for transport
 * errors and for a final 401; other statuses are the caller's to judge.
 */
int kmm_registry_request(struct kmm_registry *r, const struct kmm_image_ref *ref,
			 const char *method, const char *kind, const char *reference,
			 struct kmm_response *resp, struct kmm_error **err);

/* Error for a non-2xx response, with the registry's error code and message. */
int kmm_registry_http_fail(const struct kmm_response *resp, const char *what,
			   struct kmm_error **err);

/*
 * For kmm_image_checks: requests abort once *stop is true (stop may be NULL)
 * and fail with -ETIMEDOUT after deadline_ms (CLOCK_MONOTONIC; 0: none).
 */
void kmm_registry_set_limits(struct kmm_registry *r, const atomic_bool *stop, int64_t deadline_ms);

/* The platform to pick from indexes; returns os. */
const char *kmm_registry_platform(const struct kmm_registry *r, const char **ret_arch,
				  const char **ret_variant);

#endif
