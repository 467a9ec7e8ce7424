/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodeModulesConfig digests: what a Module reconcile needs to know of one
 * NMC (is the module in the spec, with which entry, are its labels there,
 * is it loaded as configured) kept per resourceVersion, so that walking
 * every node does not parse every NMC again. At 1,000 nodes × 10 Modules a
 * rollout reconciles each Module many times a minute; parsing the NMCs was
 * half of the operator's CPU.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kmm/api.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-json.h"
#include "kmm/kube.h"
#include "kmm/shared-macro.h"
#include "kmm/operator-runtime.h"

struct module_digest {
	char *key; /* "<namespace>/<name>" */
	struct kmm_op_nmc_module state;
};

struct nmc_digest {
	char *rv;
	size_t n;
	struct module_digest *mods;
};

struct kmm_op_nmc_digests {
	pthread_mutex_t lock;
	struct kmm_hashmap *by_name; /* NMC name -> struct nmc_digest* */
};

static void nmc_digest_free(void *p)
{
	struct nmc_digest *d = p;

	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->mods[i].key);
	free(d->mods);
	free(d->rv);
	free(d);
}

struct kmm_op_nmc_digests *kmm_op_nmc_digests_new(void)
{
	struct kmm_op_nmc_digests *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->by_name = kmm_hashmap_new(nmc_digest_free);
	if (!c->by_name) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void kmm_op_nmc_digests_free(struct kmm_op_nmc_digests *c)
{
	if (!c)
		return;
	kmm_hashmap_free(c->by_name);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void kmm_op_nmc_digests_forget(struct kmm_op_nmc_digests *c, const char *name)
{
	pthread_mutex_lock(&c->lock);
	nmc_digest_free(kmm_hashmap_remove(c->by_name, name));
	pthread_mutex_unlock(&c->lock);
}

size_t kmm_op_nmc_digests_size(struct kmm_op_nmc_digests *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = kmm_hashmap_size(c->by_name);
	pthread_mutex_unlock(&c->lock);
	return n;
}

int kmm_op_nmc_entry_digest(const json_t *entry, unsigned char out[KMM_OP_ENTRY_DIGEST_LEN])
{
	_cleanup_free_ char *text = json_dumps(entry, JSON_SORT_KEYS | JSON_COMPACT);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!text)
		return -ENOMEM;
	if (!EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL) ||
	    len < KMM_OP_ENTRY_DIGEST_LEN)
		return -EIO;
	memcpy(out, md, KMM_OP_ENTRY_DIGEST_LEN);
	return 0;
}

static const char *field(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The spec entry's config is what the status says was loaded (semantically, not byte for byte). */
static bool loaded_as_configured(const json_t *want, const json_t *status, const char *ns,
				 const char *name)
{
	const json_t *st;
	size_t i;

	json_array_foreach (status, i, st) {
		if (strcmp(field(st, "namespace") ?: "", ns) != 0 ||
		    strcmp(field(st, "name") ?: "", name) != 0)
			continue;
		return kmm_module_config_json_equal(json_object_get(want, "config"),
						    json_object_get(st, "config"));
	}
	return false;
}

static struct module_digest *find_or_add(struct nmc_digest *d, const char *key, size_t *cap)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->mods[i].key, key) == 0)
			return &d->mods[i];
	if (d->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct module_digest *m = realloc(d->mods, ncap * sizeof(*m));

		if (!m)
			return NULL;
		d->mods = m;
		*cap = ncap;
	}
	d->mods[d->n] = (struct module_digest){ .key = strdup(key) };
	if (!d->mods[d->n].key)
		return NULL;
	d->mods[d->n].state.nmc_exists = true;
	return &d->mods[d->n++];
}

/* "<prefix><ns>.<name>.<suffix>" -> "<ns>/<name>" and which label it is; false for other labels. */
static bool parse_label(const char *k, char *key, size_t size, bool *configured)
{
	size_t plen = strlen(KMM_NMC_LABEL_PREFIX), n;
	const char *rest = k + plen, *dot, *end;
	static const char cfg[] = ".module-configured", use[] = ".module-in-use";

	if (strncmp(k, KMM_NMC_LABEL_PREFIX, plen) != 0)
		return false;
	n = strlen(rest);
	if (n > strlen(cfg) && strcmp(rest + n - strlen(cfg), cfg) == 0) {
		end = rest + n - strlen(cfg);
		*configured = true;
	} else if (n > strlen(use) && strcmp(rest + n - strlen(use), use) == 0) {
		end = rest + n - strlen(use);
		*configured = false;
	} else {
		return false;
	}
	/* Namespaces are DNS labels (no dots): the first dot ends it. */
	dot = memchr(rest, '.', (size_t)(end - rest));
	if (!dot || dot == rest || dot + 1 >= end)
		return false;
	return (size_t)snprintf(key, size, "%.*s/%.*s", (int)(dot - rest), rest,
				(int)(end - dot - 1), dot + 1) < size;
}

static struct nmc_digest *digest_build(const json_t *nmc)
{
	const json_t *spec = json_object_get(json_object_get(nmc, "spec"), "modules");
	const json_t *status = json_object_get(json_object_get(nmc, "status"), "modules");
	const json_t *labels = json_object_get(json_object_get(nmc, "metadata"), "labels");
	struct nmc_digest *d = calloc(1, sizeof(*d));
	size_t cap = 0, i;
	const json_t *e;
	const char *k;
	json_t *v;
	char key[600];

	if (!d || !(d->rv = strdup(kmm_kube_meta_str(nmc, "resourceVersion") ?: "")))
		goto oom;
	json_array_foreach (spec, i, e) {
		const char *ns = field(e, "namespace") ?: "", *name = field(e, "name") ?: "";
		struct module_digest *m;

		snprintf(key, sizeof(key), "%s/%s", ns, name);
		m = find_or_add(d, key, &cap);
		if (!m)
			goto oom;
		if (m->state.in_spec)
			continue; /* a duplicate entry: the first is the one patches address */
		m->state.in_spec = true;
		if (kmm_op_nmc_entry_digest(e, m->state.entry_digest) < 0)
			goto oom;
		m->state.loaded = loaded_as_configured(e, status, ns, name);
	}
	json_object_foreach ((json_t *)labels, k, v) {
		struct module_digest *m;
		bool configured;

		if (!parse_label(k, key, sizeof(key), &configured))
			continue;
		m = find_or_add(d, key, &cap);
		if (!m)
			goto oom;
		if (configured)
			m->state.configured_label = true;
		else
			m->state.in_use_label = true;
	}
	return d;
oom:
	nmc_digest_free(d);
	return NULL;
}

static bool answer(const struct nmc_digest *d, const char *key, struct kmm_op_nmc_module *ret)
{
	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->mods[i].key, key) == 0) {
			*ret = d->mods[i].state;
			return true;
		}
	}
	*ret = (struct kmm_op_nmc_module){ .nmc_exists = true };
	return true;
}

int kmm_op_nmc_module_get(struct kmm_op_nmc_digests *c, struct kmm_op_overlay *o,
			  struct kmm_informer *inf, const char *nmc_name, const char *ns,
			  const char *name, struct kmm_op_nmc_module *ret)
{
	char rv[128];
	_cleanup_json_ json_t *nmc = NULL;
	struct nmc_digest *d, *old;
	char key[600];
	bool done = false;

	*ret = (struct kmm_op_nmc_module){};
	if ((size_t)snprintf(key, sizeof(key), "%s/%s", ns, name) >= sizeof(key))
		return -ENAMETOOLONG;
	if (!kmm_op_overlay_rv(o, inf, nmc_name, rv, sizeof(rv)))
		return 0; /* no such NMC */
	pthread_mutex_lock(&c->lock);
	d = kmm_hashmap_get(c->by_name, nmc_name);
	if (d && strcmp(d->rv, rv) == 0)
		done = answer(d, key, ret);
	pthread_mutex_unlock(&c->lock);
	if (done)
		return 0;

	nmc = kmm_op_overlay_get(o, inf, nmc_name);
	if (!nmc)
		return 0; /* deleted meanwhile */
	d = digest_build(nmc);
	if (!d)
		return -ENOMEM;
	answer(d, key, ret);
	pthread_mutex_lock(&c->lock);
	old = kmm_hashmap_get(c->by_name, nmc_name);
	/* A concurrent reconcile may have stored a newer version meanwhile. */
	if (!old || kmm_op_rv_older(old->rv, d->rv) ||
	    (!kmm_op_rv_older(d->rv, old->rv) && strcmp(old->rv, d->rv) != 0)) {
		if (kmm_hashmap_put(c->by_name, nmc_name, d, NULL) >= 0)
			d = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	nmc_digest_free(d);
	return 0;
}
