/* SPDX-License-Identifier: Apache-2.0 */
/* Reading manifests and the cluster, and printing JSON/YAML, for kmmctl. */
#include <errno.h>
#include <libfyaml.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm/api.h"
#include "kmm/kube.h"
#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-json.h"
#include "kmm/shared-yaml.h"
#include "src/cli/kmmctl.h"

void kmmctl_docs_done(struct kmmctl_docs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		json_decref(d->docs[i].json);
		free(d->docs[i].origin);
	}
	free(d->docs);
	*d = (struct kmmctl_docs){ 0 };
}

static int push_doc(struct kmmctl_docs *d, json_t *j, const char *file, size_t index, size_t total,
		    struct kmm_error **err)
{
	struct kmmctl_doc *n = reallocarray(d->docs, d->n + 1, sizeof(*n));
	char *origin = NULL;
	int r;

	if (!n)
		return kmm_error_make(err, ENOMEM, "out of memory");
	d->docs = n;
	if (total > 1)
		r = asprintf(&origin, "%s (document %zu)", file, index + 1);
	else
		r = asprintf(&origin, "%s", file);
	if (r < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	d->docs[d->n++] = (struct kmmctl_doc){ json_incref(j), origin };
	return 0;
}

static int read_stdin(char **ret, size_t *ret_len, struct kmm_error **err)
{
	_cleanup_buf_ struct kmm_buf b;
	int r = kmm_read_fd(STDIN_FILENO, KMMCTL_MAX_FILE, &b);

	if (r == -EFBIG)
		return kmm_error_make(err, E2BIG, "<stdin>: input larger than %d bytes",
				      KMMCTL_MAX_FILE);
	if (r < 0)
		return kmm_error_make_errno(err, -r, "<stdin>");
	*ret_len = b.len;
	*ret = kmm_buf_steal(&b);
	return *ret ? 0 : kmm_error_make(err, ENOMEM, "out of memory");
}

int kmmctl_read_docs(char **files, size_t n_files, struct kmmctl_docs *ret, struct kmm_error **err)
{
	struct kmmctl_docs d = { 0 };
	int r = 0;

	for (size_t f = 0; f < n_files && r >= 0; f++) {
		_cleanup_json_ json_t *docs = NULL;
		const char *name = strcmp(files[f], "-") == 0 ? "<stdin>" : files[f];
		size_t i;
		json_t *j;

		if (strcmp(files[f], "-") == 0) {
			_cleanup_free_ char *data = NULL;
			size_t len = 0;

			r = read_stdin(&data, &len, err);
			if (r >= 0)
				r = kmm_api_parse_manifests(data, len, name, &docs, err);
		} else {
			r = kmm_api_parse_manifest_file(files[f], KMMCTL_MAX_FILE, &docs, err);
		}
		if (r < 0)
			break;
		json_array_foreach (docs, i, j) {
			const char *kind = json_string_value(json_object_get(j, "kind"));
			json_t *items = json_object_get(j, "items");

			if (kind && strcmp(kind, "List") == 0 && json_is_array(items)) {
				size_t k;
				json_t *it;

				json_array_foreach (items, k, it) {
					_cleanup_free_ char *o = NULL;

					if (asprintf(&o, "%s items[%zu]", name, k) < 0) {
						r = kmm_error_make(err, ENOMEM, "out of memory");
						break;
					}
					r = push_doc(&d, it, o, 0, 1, err);
					if (r < 0)
						break;
				}
			} else {
				r = push_doc(&d, j, name, i, json_array_size(docs), err);
			}
			if (r < 0)
				break;
		}
	}
	if (r < 0) {
		kmmctl_docs_done(&d);
		return r;
	}
	*ret = d;
	return 0;
}

/*
 * True when `s` written as a plain YAML scalar reads back as the same string
 * (not a number, boolean, null, or something else): asked of the YAML parser
 * itself rather than guessed.
 */
static bool plain_is_safe(const char *s)
{
	json_t *docs = NULL;
	bool safe;

	if (!*s || strchr(s, '\n') || strchr(s, '"') || strchr(s, '\''))
		return false;
	if (kmm_yaml_parse(s, strlen(s), "scalar", KMM_YAML_BOOL_1_1, &docs, NULL) < 0)
		return false;
	safe = json_array_size(docs) == 1 && json_is_string(json_array_get(docs, 0)) &&
	       strcmp(json_string_value(json_array_get(docs, 0)), s) == 0;
	json_decref(docs);
	return safe;
}

static struct fy_node *scalar_node(struct fy_document *fyd, const char *s)
{
	struct fy_node *n;
	char *quoted;
	json_t *j;

	if (plain_is_safe(s))
		return fy_node_create_scalar_copy(fyd, s, strlen(s));
	/* A JSON string literal is a valid double-quoted YAML scalar. */
	j = json_string(s);
	quoted = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	json_decref(j);
	if (!quoted)
		return NULL;
	/* The node keeps pointing into the text: hand libfyaml the allocation. */
	n = fy_node_build_from_malloc_string(fyd, quoted, FY_NT);
	if (!n)
		free(quoted);
	return n;
}

static struct fy_node *yaml_node(struct fy_document *fyd, const json_t *v)
{
	struct fy_node *n = NULL;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *e;

		n = fy_node_create_mapping(fyd);
		json_object_foreach ((json_t *)v, k, e) {
			struct fy_node *kn = scalar_node(fyd, k), *vn = yaml_node(fyd, e);

			if (!n || !kn || !vn || fy_node_mapping_append(n, kn, vn) != 0)
				return NULL;
		}
		return n;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *e;

		n = fy_node_create_sequence(fyd);
		json_array_foreach ((json_t *)v, i, e) {
			struct fy_node *vn = yaml_node(fyd, e);

			if (!n || !vn || fy_node_sequence_append(n, vn) != 0)
				return NULL;
		}
		return n;
	}
	case JSON_STRING:
		return scalar_node(fyd, json_string_value(v));
	case JSON_INTEGER:
	case JSON_REAL:
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL: {
		_cleanup_free_ char *tok = json_dumps(v, JSON_ENCODE_ANY);

		return tok ? fy_node_create_scalar_copy(fyd, tok, strlen(tok)) : NULL;
	}
	}
	return NULL;
}

int kmmctl_parse_output(const struct kmm_option *o, const char *arg, void *ctx,
			struct kmm_error **err)
{
	void *field = (char *)ctx + o->offset;

	if (strcmp(arg, "table") != 0 && strcmp(arg, "json") != 0 && strcmp(arg, "yaml") != 0)
		return kmm_error_make(err, EINVAL, "invalid --output '%s' (table, json or yaml)",
				      arg);
	*(const char **)field = arg;
	return 0;
}

int kmmctl_connect(const char *kubeconfig, struct kmm_kube_client **ret_client,
		   struct kmm_error **err)
{
	_cleanup_kube_config_ struct kmm_kube_config *cfg = NULL;
	int r = kmm_kube_config_load_default(kubeconfig, NULL, &cfg, err);

	return r < 0 ? r : kmm_kube_client_new(cfg, NULL, ret_client, err);
}

int kmmctl_set_kind(json_t *item, const char *kind)
{
	/* Items of a list carry no apiVersion/kind. */
	return json_object_set_new(item, "apiVersion", json_string(KMM_API_VERSION)) < 0 ||
		       json_object_set_new(item, "kind", json_string(kind)) < 0
		   ? -ENOMEM
		   : 0;
}

int kmmctl_print(const json_t *j, const char *format)
{
	struct fy_document *fyd;
	struct fy_node *root;
	char *yaml;

	if (!format || strcmp(format, "json") == 0) {
		_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (!text)
			return -ENOMEM;
		puts(text);
		return 0;
	}
	/* YAML: build the libfyaml document node by node, then let it emit block style. */
	fyd = fy_document_create(NULL);
	if (!fyd)
		return -ENOMEM;
	root = yaml_node(fyd, j);
	if (!root || fy_document_set_root(fyd, root) != 0) {
		fy_document_destroy(fyd);
		return -ENOMEM;
	}
	yaml = fy_emit_document_to_string(fyd, FYECF_MODE_BLOCK | FYECF_INDENT_2 | FYECF_STRIP_DOC);
	fy_document_destroy(fyd);
	if (!yaml)
		return -ENOMEM;
	fputs(yaml, stdout);
	free(yaml);
	return 0;
}
