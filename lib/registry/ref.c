/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image references as Docker spells them:
 *   [host[:port]/]component(/component)*[:tag][@sha256:<hex>]
 * Components are lowercase alphanumerics joined by '.', '_', '__' or '-'s;
 * tags are [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/registry.h"
#include "lib/registry/registry-internal.h"

#define REF_MAX 4096

void kmm_image_ref_free(struct kmm_image_ref *ref)
{
	if (!ref)
		return;
	free(ref->registry);
	free(ref->repository);
	free(ref->tag);
	free(ref->digest);
	free(ref);
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: alnum runs separated by '.', '_', '__' or one or more '-'. */
static bool component_valid(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	while (i < n) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		if (s[i] == '.' || (s[i] == '_' && (i + 1 >= n || s[i + 1] != '_'))) {
			i++;
		} else if (s[i] == '_') {
			i += 2;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i >= n || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool tag_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128 || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++) {
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	}
	return true;
}

static bool host_valid(const char *s, size_t n)
{
	size_t colon = n;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == ':') {
			colon = i;
			break;
		}
	}
	if (colon == 0)
		return false;
	/* dot-separated labels of alphanumerics and inner '-' */
	for (size_t i = 0; i < colon; i++) {
		bool label_start = i == 0 || s[i - 1] == '.';
		bool label_end = i + 1 == colon || s[i + 1] == '.';

		if (s[i] == '.' && !label_start && !label_end)
			continue;
		if (isalnum((unsigned char)s[i]))
			continue;
		if (s[i] == '-' && !label_start && !label_end)
			continue;
		return false;
	}
	if (colon < n) {
		if (colon + 1 == n || n - colon - 1 > 5)
			return false;
		for (size_t i = colon + 1; i < n; i++) {
			if (!isdigit((unsigned char)s[i]))
				return false;
		}
	}
	return true;
}

static bool looks_like_host(const char *s, size_t n)
{
	if (n == 9 && strncmp(s, "localhost", 9) == 0)
		return true;
	return memchr(s, '.', n) || memchr(s, ':', n) ||
	       n != strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-_");
}

int kmm_image_ref_parse(const char *s, struct kmm_image_ref **ret_ref, struct kmm_error **err)
{
	_cleanup_(kmm_image_ref_freep) struct kmm_image_ref *ref = NULL;
	_cleanup_free_ char *copy = NULL;
	char *name, *at, *slash, *colon, *path;

	if (!s || !*s)
		return kmm_error_make(err, EINVAL, "invalid image reference '': empty");
	if (strlen(s) > REF_MAX)
		return kmm_error_make(err, EINVAL, "invalid image reference: longer than %d bytes",
				      REF_MAX);
	copy = strdup(s);
	ref = calloc(1, sizeof(*ref));
	if (!copy || !ref)
		return -ENOMEM;
	name = copy;

	at = strchr(name, '@');
	if (at) {
		*at = '\0';
		if (!kmm_digest_valid(at + 1))
			return kmm_error_make(err, EINVAL,
					      "invalid image reference '%s': digest must be "
					      "sha256: and 64 lowercase hex digits",
					      s);
		ref->digest = strdup(at + 1);
		if (!ref->digest)
			return -ENOMEM;
	}

	/* The tag is after the last ':' that follows the last '/'. */
	slash = strrchr(name, '/');
	colon = strrchr(slash ? slash : name, ':');
	if (colon) {
		*colon = '\0';
		if (!tag_valid(colon + 1))
			return kmm_error_make(err, EINVAL,
					      "invalid image reference '%s': bad tag '%s'", s,
					      colon + 1);
		ref->tag = strdup(colon + 1);
		if (!ref->tag)
			return -ENOMEM;
	}

	slash = strchr(name, '/');
	if (slash && looks_like_host(name, (size_t)(slash - name))) {
		if (!host_valid(name, (size_t)(slash - name)))
			return kmm_error_make(err, EINVAL,
					      "invalid image reference '%s': bad registry host", s);
		ref->registry = strndup(name, (size_t)(slash - name));
		path = slash + 1;
	} else {
		ref->registry = strdup("docker.io");
		path = name;
	}
	if (!ref->registry)
		return -ENOMEM;

	for (const char *p = path;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (!component_valid(p, n))
			return kmm_error_make(err, EINVAL,
					      "invalid image reference '%s': repository must be "
					      "lowercase components separated by '/'",
					      s);
		if (!end)
			break;
		p = end + 1;
	}
	if (strcmp(ref->registry, "docker.io") == 0 && !strchr(path, '/')) {
		if (asprintf(&ref->repository, "library/%s", path) < 0)
			ref->repository = NULL;
	} else {
		ref->repository = strdup(path);
	}
	if (!ref->repository)
		return -ENOMEM;
	if (strlen(ref->repository) > 255)
		return kmm_error_make(
		    err, EINVAL, "invalid image reference '%s': repository longer than 255 bytes",
		    s);
	if (!ref->tag && !ref->digest) {
		ref->tag = strdup("latest");
		if (!ref->tag)
			return -ENOMEM;
	}
	*ret_ref = TAKE_PTR(ref);
	return 0;
}

char *kmm_image_ref_to_string(const struct kmm_image_ref *ref)
{
	char *s = NULL;

	if (asprintf(&s, "%s/%s%s%s%s%s", ref->registry, ref->repository, ref->tag ? ":" : "",
		     ref->tag ? ref->tag : "", ref->digest ? "@" : "",
		     ref->digest ? ref->digest : "") < 0)
		return NULL;
	return s;
}
