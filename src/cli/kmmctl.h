/* SPDX-License-Identifier: Apache-2.0 */
/* kmmctl internals shared by its commands. */
#ifndef KMM_SRC_CLI_KMMCTL_H
#define KMM_SRC_CLI_KMMCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kmm/shared-error.h"
#include "kmm/shared-options.h"

struct kmm_kube_client;

#define PROG "kmmctl"

/* Manifests are small; anything larger than this is refused. */
#define KMMCTL_MAX_FILE (16 * 1024 * 1024)

/* One YAML/JSON document and where it came from. */
struct kmmctl_doc {
	json_t *json; /* owned */
	char *origin; /* "file.yaml" or "file.yaml (document 2)" */
};

struct kmmctl_docs {
	size_t n;
	struct kmmctl_doc *docs;
};

/*
 * Reads every document of every file ("-" is stdin), expanding `kind: List`.
 * Returns 0 or a negative errno with err naming the file and line.
 */
int kmmctl_read_docs(char **files, size_t n_files, struct kmmctl_docs *ret, struct kmm_error **err);
void kmmctl_docs_done(struct kmmctl_docs *d);

/* Prints j as JSON (indented) or YAML (block style) to stdout. Returns 0 or -errno. */
int kmmctl_print(const json_t *j, const char *format);

/*
 * parse() of an --output option: "table", "json" or "yaml", stored in the
 * const char * at the option's offset in ctx.
 */
int kmmctl_parse_output(const struct kmm_option *o, const char *arg, void *ctx,
			struct kmm_error **err);

/* A client for the cluster of kubeconfig (NULL: $KUBECONFIG, then in-cluster, as every binary). */
int kmmctl_connect(const char *kubeconfig, struct kmm_kube_client **ret_client,
		   struct kmm_error **err);

/* Gives an item of a list of kmm objects the apiVersion and kind the decoders want. */
int kmmctl_set_kind(json_t *item, const char *kind);

int kmmctl_validate(int argc, char **argv);
int kmmctl_plan(int argc, char **argv);
int kmmctl_status(int argc, char **argv);

#endif
