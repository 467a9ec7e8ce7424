/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry credentials from .dockerconfigjson documents, and WWW-Authenticate
 * challenge parsing for the Basic and Bearer (token) schemes.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "lib/registry/registry-internal.h"

char *kmm_base64_encode(const void *data, size_t len)
{
	char *out;

	if (len > (size_t)1 << 30)
		return NULL;
	out = malloc(4 * ((len + 2) / 3) + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

int kmm_base64_decode(const char *s, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *out = NULL;
	size_t n = strlen(s), pad = 0;
	int m;

	if (n == 0) {
		out = strdup("");
		if (!out)
			return -ENOMEM;
		*ret = TAKE_PTR(out);
		*ret_len = 0;
		return 0;
	}
	if (n % 4 != 0 || n > (size_t)1 << 30)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=') {
			if (i < n - 2)
				return -EINVAL;
			pad++;
		} else if (pad || !(isalnum(c) || c == '+' || c == '/')) {
			return -EINVAL;
		}
	}
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	m = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	if (m < 0 || (size_t)m < pad)
		return -EINVAL;
	m -= (int)pad;
	out[m] = '\0';
	*ret_len = (size_t)m;
	*ret = TAKE_PTR(out);
	return 0;
}

/* "https://host:5000/v1/" -> "host:5000" (heap). */
static char *normalize_key(const char *key)
{
	const char *p = strstr(key, "://");

	p = p ? p + 3 : key;
	return strndup(p, strcspn(p, "/"));
}

static bool is_docker_hub(const char *host)
{
	return strcmp(host, "docker.io") == 0 || strcmp(host, "index.docker.io") == 0 ||
	       strcmp(host, "registry-1.docker.io") == 0;
}

static int entry_credentials(json_t *entry, const char *key, char **ret_user, char **ret_password,
			     struct kmm_error **err)
{
	_cleanup_free_ char *user = NULL, *password = NULL;
	json_t *auth = json_object_get(entry, "auth");

	if (!json_is_object(entry))
		return kmm_error_make(err, EINVAL, "docker config: auths.\"%s\" is not an object",
				      key);
	if (json_is_string(auth) && json_string_length(auth) > 0) {
		_cleanup_free_ char *decoded = NULL;
		size_t n;
		char *colon;

		if (kmm_base64_decode(json_string_value(auth), &decoded, &n) < 0)
			return kmm_error_make(
			    err, EINVAL, "docker config: auths.\"%s\".auth is not valid base64",
			    key);
		colon = memchr(decoded, ':', n);
		if (!colon || strlen(decoded) != n)
			return kmm_error_make(
			    err, EINVAL,
			    "docker config: auths.\"%s\".auth does not decode to user:password",
			    key);
		user = strndup(decoded, (size_t)(colon - decoded));
		password = strdup(colon + 1);
	} else {
		json_t *u = json_object_get(entry, "username"),
		       *p = json_object_get(entry, "password");

		if (!json_is_string(u) || !json_is_string(p))
			return kmm_error_make(err, EINVAL,
					      "docker config: auths.\"%s\" has neither auth nor "
					      "username and password",
					      key);
		user = strdup(json_string_value(u));
		password = strdup(json_string_value(p));
	}
	if (!user || !password)
		return -ENOMEM;
	*ret_user = TAKE_PTR(user);
	*ret_password = TAKE_PTR(password);
	return 1;
}

int kmm_docker_config_lookup(const char *json, size_t len, const char *registry, char **ret_user,
			     char **ret_password, struct kmm_error **err)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	json_error_t jerr;
	json_t *auths, *entry, *found = NULL;
	const char *key, *found_key = NULL;

	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return kmm_error_make(err, EINVAL, "docker config is not valid JSON: %s at line %d",
				      jerr.text, jerr.line);
	auths = json_object_get(root, "auths");
	if (!json_is_object(root) || !json_is_object(auths))
		return kmm_error_make(err, EINVAL, "docker config has no \"auths\" object");
	json_object_foreach (auths, key, entry) {
		_cleanup_free_ char *host = normalize_key(key);

		if (!host)
			return -ENOMEM;
		if (strcmp(host, registry) == 0 ||
		    (is_docker_hub(host) && is_docker_hub(registry))) {
			found = entry;
			found_key = key;
			/* An exact key wins over a normalized one. */
			if (strcmp(key, registry) == 0)
				break;
		}
	}
	if (!found)
		return 0;
	return entry_credentials(found, found_key, ret_user, ret_password, err);
}

void kmm_auth_challenge_done(struct kmm_auth_challenge *c)
{
	free(c->scheme);
	free(c->realm);
	free(c->service);
	free(c->scope);
	*c = (struct kmm_auth_challenge){ 0 };
}

/* Reads one auth-param value (token or quoted-string) from *p into a heap string. */
static int read_value(const char **p, char **ret)
{
	const char *s = *p;
	_cleanup_free_ char *out = NULL;
	size_t n = 0;

	out = malloc(strlen(s) + 1);
	if (!out)
		return -ENOMEM;
	if (*s == '"') {
		s++;
		while (*s && *s != '"') {
			if (*s == '\\' && s[1])
				s++;
			out[n++] = *s++;
		}
		if (*s != '"')
			return -EINVAL;
		s++;
	} else {
		while (*s && *s != ',' && !isspace((unsigned char)*s))
			out[n++] = *s++;
	}
	out[n] = '\0';
	*p = s;
	*ret = TAKE_PTR(out);
	return 0;
}

int kmm_auth_challenge_parse(const char *value, struct kmm_auth_challenge *ret,
			     struct kmm_error **err)
{
	struct kmm_auth_challenge c = { 0 };
	const char *p = value;
	size_t n;
	int r = 0;

	while (isspace((unsigned char)*p))
		p++;
	n = strcspn(p, " \t");
	if (n == 0)
		return kmm_error_make(err, EINVAL, "empty WWW-Authenticate header");
	c.scheme = strndup(p, n);
	if (!c.scheme)
		return -ENOMEM;
	for (char *q = c.scheme; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	p += n;
	while (*p) {
		_cleanup_free_ char *name = NULL, *val = NULL;
		char **slot = NULL;

		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (!*p)
			break;
		n = strcspn(p, "= \t,");
		if (p[n] != '=') {
			r = -EINVAL;
			break;
		}
		name = strndup(p, n);
		if (!name) {
			r = -ENOMEM;
			break;
		}
		p += n + 1;
		r = read_value(&p, &val);
		if (r < 0)
			break;
		if (strcasecmp(name, "realm") == 0)
			slot = &c.realm;
		else if (strcasecmp(name, "service") == 0)
			slot = &c.service;
		else if (strcasecmp(name, "scope") == 0)
			slot = &c.scope;
		if (slot) {
			free(*slot);
			*slot = TAKE_PTR(val);
		}
	}
	if (r == 0 && strcmp(c.scheme, "bearer") == 0 && !c.realm)
		r = -EINVAL;
	if (r < 0) {
		kmm_auth_challenge_done(&c);
		if (r == -ENOMEM)
			return r;
		return kmm_error_make(err, EINVAL, "malformed WWW-Authenticate header '%.200s'",
				      value);
	}
	*ret = c;
	return 0;
}
