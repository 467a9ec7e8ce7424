/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML in, JSON values (jansson) out, so every kmm parser has one code path
 * whether its input was YAML (manifests, kubeconfig, worker config, operator
 * config) or JSON (the API).
 *
 * Scalars are typed by the YAML 1.2 core schema: plain `null`/`~`/empty is
 * null, `true`/`false` (any case style YAML allows) are booleans, integers and
 * floats are numbers; quoted scalars and anything tagged !!str are strings.
 * KMM_YAML_BOOL_1_1 also types plain yes/no/on/off/y/n as booleans, as kubectl
 * (YAML 1.1) does when it converts a manifest to JSON.
 *
 * Aliases are expanded; an alias bomb is stopped by the node cap. Duplicate
 * mapping keys and non-scalar keys are errors. Errors name the source and the
 * line: "module.yaml:12: duplicate key 'spec'".
 */
#ifndef KMM_YAML_H
#define KMM_YAML_H

#include <jansson.h>
#include <stddef.h>

#include "kmm/shared-error.h"
#include "kmm/shared-json.h"

enum kmm_yaml_flags {
	KMM_YAML_BOOL_1_1 = 1 << 0,
};

/* Upper bounds on what one parse may build, against hostile input. */
#define KMM_YAML_MAX_NODES 1000000
#define KMM_YAML_MAX_DEPTH 200

/*
 * Parses every document of a YAML stream. Returns 0 and a new JSON array (one
 * element per non-empty document; empty documents are skipped) in *ret_docs,
 * owned by the caller. `source` names the input in error messages.
 */
int kmm_yaml_parse(const char *data, size_t len, const char *source, unsigned flags,
		   json_t **ret_docs, struct kmm_error **err);

/* Reads `path` (capped at max_size bytes) and parses it like kmm_yaml_parse(). */
int kmm_yaml_parse_file(const char *path, size_t max_size, unsigned flags, json_t **ret_docs,
			struct kmm_error **err);

#endif
