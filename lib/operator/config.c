/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "kmm/shared-fileio.h"
#include "kmm/operator-config.h"
#include "kmm/operator-runtime.h"
#include "kmm/registry.h"
#include "kmm/shared-strv.h"
#include "kmm/shared-yaml.h"

#define CONFIG_MAX (1024 * 1024)

static int set_str(char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

int kmm_operator_config_init(struct kmm_operator_config *c)
{
	*c = (struct kmm_operator_config){
		.webhook_port = 9443,
		.leader_election_enabled = true,
		.metrics_secure_serving = true,
		.metrics_enable_authn_authz = true,
		.mode = KMM_OP_MODE_STANDALONE,
	};
	if (set_str(&c->health_probe_bind_address, ":8081") < 0 ||
	    set_str(&c->leader_election_resource_id, "kmm.sigs.x-k8s.io") < 0 ||
	    set_str(&c->metrics_bind_address, "0.0.0.0:8443") < 0 ||
	    set_str(&c->worker_selinux_type, "spc_t") < 0 ||
	    set_str(&c->worker_firmware_host_path, "/lib/firmware") < 0) {
		kmm_operator_config_free(c);
		return -ENOMEM;
	}
	return 0;
}

void kmm_operator_config_free(struct kmm_operator_config *c)
{
	if (!c)
		return;
	free(c->health_probe_bind_address);
	free(c->leader_election_resource_id);
	free(c->metrics_bind_address);
	free(c->worker_selinux_type);
	free(c->worker_firmware_host_path);
	free(c->registry_ca_file);
	kmm_strv_free(c->registry_allowed_networks);
	kmm_strv_free(c->registry_denied_networks);
	free(c->operator_namespace);
	free(c->worker_image);
	free(c->build_image);
	free(c->sign_image);
	*c = (struct kmm_operator_config){ 0 };
}

int kmm_parse_go_duration(const char *s, int64_t *ret_ns)
{
	static const struct {
		const char *unit;
		double ns;
	} units[] = {
		{ "ns", 1 },   { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "\xce\xbcs", 1e3 },
		{ "ms", 1e6 }, { "s", 1e9 },  { "m", 60e9 },	    { "h", 3600e9 },
	};
	const char *p = s;
	double total = 0;
	bool negative = false;

	if (*p == '-' || *p == '+')
		negative = *p++ == '-';
	if (strcmp(p, "0") == 0) {
		*ret_ns = 0;
		return 0;
	}
	if (!*p)
		return -EINVAL;
	while (*p) {
		const char *start = p;
		bool digits = false;
		double v;
		size_t i;

		while (*p >= '0' && *p <= '9') {
			p++;
			digits = true;
		}
		if (*p == '.') {
			p++;
			while (*p >= '0' && *p <= '9') {
				p++;
				digits = true;
			}
		}
		if (!digits)
			return -EINVAL;
		v = strtod(start, NULL);
		for (i = 0; i < KMM_ARRAY_SIZE(units); i++) {
			size_t n = strlen(units[i].unit);
			/* "m" must not swallow the "m" of "ms". */
			if (strncmp(p, units[i].unit, n) == 0 &&
			    !(n == 1 && p[0] == 'm' && p[1] == 's')) {
				total += v * units[i].ns;
				p += n;
				break;
			}
		}
		if (i == KMM_ARRAY_SIZE(units))
			return -EINVAL;
	}
	if (total > 9.2e18)
		return -ERANGE;
	*ret_ns = (int64_t)llround(negative ? -total : total);
	return 0;
}

/* One accepted key: its JSON path and how to store it. */
enum kind {
	KIND_STRING,
	KIND_BOOL,
	KIND_PORT,
	KIND_INT64,
	KIND_DURATION,
	KIND_BUILDER,
	KIND_IMAGE_CHECK,
	KIND_NETWORKS,
};

struct key {
	const char *section; /* NULL for top level */
	const char *name;
	enum kind kind;
	size_t offset;
};

#define FIELD(f) offsetof(struct kmm_operator_config, f)

static const struct key keys[] = {
	{ NULL, "healthProbeBindAddress", KIND_STRING, FIELD(health_probe_bind_address) },
	{ NULL, "webhookPort", KIND_PORT, FIELD(webhook_port) },
	{ "leaderElection", "enabled", KIND_BOOL, FIELD(leader_election_enabled) },
	{ "leaderElection", "resourceID", KIND_STRING, FIELD(leader_election_resource_id) },
	{ "metrics", "bindAddress", KIND_STRING, FIELD(metrics_bind_address) },
	{ "metrics", "secureServing", KIND_BOOL, FIELD(metrics_secure_serving) },
	{ "metrics", "enableAuthnAuthz", KIND_BOOL, FIELD(metrics_enable_authn_authz) },
	{ "worker", "runAsUser", KIND_INT64, FIELD(worker_run_as_user) },
	{ "worker", "seLinuxType", KIND_STRING, FIELD(worker_selinux_type) },
	{ "worker", "firmwareHostPath", KIND_STRING, FIELD(worker_firmware_host_path) },
	{ "job", "gcDelay", KIND_DURATION, FIELD(job_gc_delay_ns) },
	{ "job", "builder", KIND_BUILDER, FIELD(job_builder) },
	{ NULL, "imageCheck", KIND_IMAGE_CHECK, FIELD(image_check) },
	{ NULL, "registryCAFile", KIND_STRING, FIELD(registry_ca_file) },
	{ NULL, "registryAllowedNetworks", KIND_NETWORKS, FIELD(registry_allowed_networks) },
	{ NULL, "registryDeniedNetworks", KIND_NETWORKS, FIELD(registry_denied_networks) },
};

/* A list of IP addresses or CIDRs, checked the way the registry client reads them. */
static int store_networks(char ***field, json_t *v, const char *source, const char *path,
			  struct kmm_error **err)
{
	_cleanup_(kmm_strv_freep) char **list = NULL;
	_cleanup_(kmm_registry_policy_freep) struct kmm_registry_policy *p = NULL;
	json_t *item;
	size_t i;
	int r;

	if (!json_is_array(v))
		return kmm_error_make(
		    err, EINVAL, "%s: %s: expected a list of IP addresses or CIDRs", source, path);
	json_array_foreach (v, i, item) {
		if (!json_is_string(item))
			return kmm_error_make(err, EINVAL,
					      "%s: %s[%zu]: expected an IP address or CIDR string",
					      source, path, i);
		r = kmm_strv_push(&list, json_string_value(item));
		if (r < 0)
			return kmm_error_make_errno(err, -r, "%s", source);
	}
	r = kmm_registry_policy_new((const char *const *)list, NULL, &p, err);
	if (r < 0)
		return kmm_error_wrap(err, "%s: %s", source, path);
	kmm_strv_free(*field);
	*field = TAKE_PTR(list);
	return 0;
}

static const char *const yaml11_true[] = { "y",	 "Y",  "yes",  "Yes",  "YES",  "on",
					   "On", "ON", "true", "True", "TRUE", NULL };
static const char *const yaml11_false[] = { "n",   "N",	  "no",	   "No",    "NO",    "off",
					    "Off", "OFF", "false", "False", "FALSE", NULL };

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++) {
		if (strcmp(s, *list) == 0)
			return true;
	}
	return false;
}

static int store(struct kmm_operator_config *c, const struct key *k, json_t *v, const char *source,
		 struct kmm_error **err)
{
	char path[96];
	void *field = (char *)c + k->offset;
	int64_t ns;

	snprintf(path, sizeof(path), "%s%s%s", k->section ? k->section : "", k->section ? "." : "",
		 k->name);
	switch (k->kind) {
	case KIND_STRING:
		if (!json_is_string(v))
			return kmm_error_make(err, EINVAL, "%s: %s: expected a string", source,
					      path);
		if (set_str(field, json_string_value(v)) < 0)
			return kmm_error_make_errno(err, ENOMEM, "%s", source);
		return 0;
	case KIND_BOOL:
		if (json_is_boolean(v)) {
			*(bool *)field = json_is_true(v);
			return 0;
		}
		if (json_is_string(v) && in_list(json_string_value(v), yaml11_true)) {
			*(bool *)field = true;
			return 0;
		}
		if (json_is_string(v) && in_list(json_string_value(v), yaml11_false)) {
			*(bool *)field = false;
			return 0;
		}
		return kmm_error_make(err, EINVAL, "%s: %s: expected a boolean (true or false)",
				      source, path);
	case KIND_PORT:
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 65535)
			return kmm_error_make(err, EINVAL,
					      "%s: %s: expected a port number from 1 to 65535",
					      source, path);
		*(int *)field = (int)json_integer_value(v);
		return 0;
	case KIND_INT64:
		if (!json_is_integer(v))
			return kmm_error_make(err, EINVAL, "%s: %s: expected an integer", source,
					      path);
		*(int64_t *)field = json_integer_value(v);
		return 0;
	case KIND_DURATION:
		if (!json_is_string(v) || kmm_parse_go_duration(json_string_value(v), &ns) < 0 ||
		    ns < 0)
			return kmm_error_make(err, EINVAL,
					      "%s: %s: expected a duration such as \"0s\", \"90s\" "
					      "or \"1h30m\"",
					      source, path);
		*(int64_t *)field = ns;
		return 0;
	case KIND_BUILDER:
		/* Exact spellings: a builder nobody chose must not run by accident. */
		if (json_is_string(v) && strcmp(json_string_value(v), "kaniko") == 0)
			*(enum kmm_builder *)field = KMM_BUILDER_KANIKO;
		else if (json_is_string(v) && strcmp(json_string_value(v), "buildah") == 0)
			*(enum kmm_builder *)field = KMM_BUILDER_BUILDAH;
		else
			return kmm_error_make(err, EINVAL,
					      "%s: %s: expected \"kaniko\" or \"buildah\"", source,
					      path);
		return 0;
	case KIND_IMAGE_CHECK:
		/* Pull pods are opt-in: only this exact spelling starts them. */
		if (json_is_string(v) && strcmp(json_string_value(v), "registry") == 0)
			*(enum kmm_image_check *)field = KMM_IMAGE_CHECK_REGISTRY;
		else if (json_is_string(v) && strcmp(json_string_value(v), "pullPod") == 0)
			*(enum kmm_image_check *)field = KMM_IMAGE_CHECK_PULL_POD;
		else
			return kmm_error_make(err, EINVAL,
					      "%s: %s: expected \"registry\" or \"pullPod\"",
					      source, path);
		return 0;
	case KIND_NETWORKS:
		return store_networks(field, v, source, path, err);
	}
	return -EINVAL;
}

static const struct key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(keys); i++) {
		if (((!section && !keys[i].section) ||
		     (section && keys[i].section && strcmp(section, keys[i].section) == 0)) &&
		    strcmp(name, keys[i].name) == 0)
			return &keys[i];
	}
	return NULL;
}

static bool is_section(const char *name)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(keys); i++) {
		if (keys[i].section && strcmp(keys[i].section, name) == 0)
			return true;
	}
	return false;
}

int kmm_operator_config_parse(struct kmm_operator_config *c, const char *yaml, size_t len,
			      const char *source, struct kmm_error **err)
{
	_cleanup_json_ json_t *docs = NULL;
	const char *name, *inner_name;
	json_t *root, *v, *inner_v;
	int r;

	if (len > CONFIG_MAX)
		return kmm_error_make(err, EFBIG, "%s: larger than %d bytes", source, CONFIG_MAX);
	r = kmm_yaml_parse(yaml, len, source, 0, &docs, err);
	if (r < 0)
		return r;
	if (json_array_size(docs) == 0)
		return 0; /* an empty file keeps every default */
	if (json_array_size(docs) > 1)
		return kmm_error_make(err, EINVAL, "%s: expected one YAML document, found %zu",
				      source, json_array_size(docs));
	root = json_array_get(docs, 0);
	if (!json_is_object(root))
		return kmm_error_make(err, EINVAL, "%s: expected a mapping at the top level",
				      source);
	json_object_foreach (root, name, v) {
		const struct key *k = find_key(NULL, name);

		if (k) {
			r = store(c, k, v, source, err);
			if (r < 0)
				return r;
			continue;
		}
		if (!is_section(name))
			return kmm_error_make(err, EINVAL, "%s: unknown key '%s'", source, name);
		if (json_is_null(v))
			continue;
		if (!json_is_object(v))
			return kmm_error_make(err, EINVAL, "%s: %s: expected a mapping", source,
					      name);
		json_object_foreach (v, inner_name, inner_v) {
			k = find_key(name, inner_name);
			if (!k)
				return kmm_error_make(err, EINVAL, "%s: unknown key '%s.%s'",
						      source, name, inner_name);
			r = store(c, k, inner_v, source, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* KMM_MANAGED as Go's strconv.ParseBool reads it (upstream's spoke switch). */
static int managed_from_env(struct kmm_operator_config *c, const char *value,
			    struct kmm_error **err)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

	if (!value || !*value)
		return 0;
	for (size_t i = 0; i < KMM_ARRAY_SIZE(no); i++)
		if (strcmp(value, no[i]) == 0)
			return 0;
	for (size_t i = 0; i < KMM_ARRAY_SIZE(yes); i++) {
		if (strcmp(value, yes[i]) != 0)
			continue;
		if (c->mode == KMM_OP_MODE_HUB)
			return kmm_error_make(err, EINVAL,
					      "%s=%s: a hub (--hub) is not a managed cluster",
					      KMM_ENV_MANAGED, value);
		c->mode = KMM_OP_MODE_SPOKE;
		return 0;
	}
	return kmm_error_make(err, EINVAL, "%s=\"%s\": not a boolean", KMM_ENV_MANAGED, value);
}

int kmm_operator_config_from_env(struct kmm_operator_config *c,
				 char *(*getenv_fn)(const char *name), struct kmm_error **err)
{
	static const struct {
		const char *var;
		size_t offset;
		bool required;
	} vars[] = {
		{ "OPERATOR_NAMESPACE", FIELD(operator_namespace), true },
		{ "RELATED_IMAGE_WORKER", FIELD(worker_image), true },
		{ "RELATED_IMAGE_BUILD", FIELD(build_image), false },
		{ "RELATED_IMAGE_SIGN", FIELD(sign_image), false },
	};

	for (size_t i = 0; i < KMM_ARRAY_SIZE(vars); i++) {
		const char *value = getenv_fn(vars[i].var);

		if (!value || !*value) {
			if (vars[i].required &&
			    !(c->mode == KMM_OP_MODE_HUB && vars[i].offset == FIELD(worker_image)))
				return kmm_error_make(err, EINVAL,
						      "environment variable %s must be set",
						      vars[i].var);
			continue;
		}
		void *field = (char *)c + vars[i].offset;

		if (set_str(field, value) < 0)
			return kmm_error_make_errno(err, ENOMEM, "read %s", vars[i].var);
	}
	return managed_from_env(c, getenv_fn(KMM_ENV_MANAGED), err);
}

int kmm_operator_config_load(struct kmm_operator_config *c, struct kmm_kube_client *kube,
			     struct kmm_metrics *m, const char *config_map, const char *config_file,
			     bool *ret_map_missing, struct kmm_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	*ret_map_missing = false;
	if (config_file) {
		r = kmm_read_file(config_file, 1 << 20, &text, &len, err);
		if (r < 0 || (r = kmm_operator_config_parse(c, text, len, config_file, err)) < 0)
			return r;
	} else if (config_map) {
		struct kmm_kube_target t = { &kmm_kube_configmaps, c->operator_namespace,
					     config_map, NULL };
		_cleanup_json_ json_t *cm = NULL;
		struct kmm_op_api api;
		struct kmm_error *e = NULL;
		const char *data;

		r = kmm_op_api_init(&api, kube, m, err);
		if (r < 0)
			return r;
		r = kmm_op_get(&api, &t, &cm, &e);
		if (r == -ENOENT) {
			kmm_error_free(e);
			*ret_map_missing = true;
		} else if (r < 0) {
			*err = e;
			return kmm_error_wrap(err, "read ConfigMap %s/%s", c->operator_namespace,
					      config_map);
		} else if ((data = json_string_value(json_object_get(json_object_get(cm, "data"),
								     KMM_OPERATOR_CONFIG_KEY)))) {
			r = kmm_operator_config_parse(c, data, strlen(data),
						      "ConfigMap " KMM_OPERATOR_CONFIG_KEY, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int kmm_operator_config_check_files(const struct kmm_operator_config *c, struct kmm_error **err)
{
	_cleanup_free_ char *pem = NULL;

	/* A CA bundle that cannot be read would fail every image check: say so at start. */
	if (!c->registry_ca_file || !*c->registry_ca_file)
		return 0;
	if (kmm_read_file(c->registry_ca_file, 4 * 1024 * 1024, &pem, NULL, err) < 0)
		return kmm_error_wrap(err, "registryCAFile");
	if (!strstr(pem, "-----BEGIN CERTIFICATE-----"))
		return kmm_error_make(err, EINVAL, "registryCAFile: %s holds no PEM certificate",
				      c->registry_ca_file);
	return 0;
}
