/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator's configuration: the `controller_config.yaml` key of its
 * ConfigMap (upstream's format and defaults) plus the environment.
 *
 * Unlike upstream, which logs a bad file and carries on with defaults, a bad
 * value or an unknown key is an error naming the key, so a typo never silently
 * runs the operator with settings nobody chose.
 */
#ifndef KMM_OPERATOR_CONFIG_H
#define KMM_OPERATOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/operator-buildsign.h"
#include "kmm/shared-error.h"

#define KMM_OPERATOR_CONFIG_KEY "controller_config.yaml"
#define KMM_ENV_MANAGED "KMM_MANAGED"

/*
 * Which controllers kmm-operator runs (docs/hub-spoke.md): one bit each, so
 * that a reconciler or cache can name every mode it runs in.
 */
enum kmm_op_mode {
	KMM_OP_MODE_STANDALONE = 1 << 0, /* a cluster on its own (the default) */
	KMM_OP_MODE_SPOKE = 1 << 1,	 /* KMM_MANAGED=1: fed by a hub, builds nothing */
	KMM_OP_MODE_HUB = 1 << 2,	 /* --hub: ManagedClusterModules, builds, ManifestWorks */
};

/* How the operator learns whether a Module's kmod image exists. */
enum kmm_image_check {
	KMM_IMAGE_CHECK_REGISTRY, /* HEAD of the manifest, from the operator */
	KMM_IMAGE_CHECK_PULL_POD, /* a pod running the image: the nodes' runtime pulls it */
};

struct kmm_operator_config {
	char *health_probe_bind_address;   /* healthProbeBindAddress, ":8081" */
	int webhook_port;		   /* webhookPort, 9443 */
	bool leader_election_enabled;	   /* leaderElection.enabled, true */
	char *leader_election_resource_id; /* leaderElection.resourceID, "kmm.sigs.x-k8s.io" */
	char *metrics_bind_address;	   /* metrics.bindAddress, "0.0.0.0:8443"; "0" disables */
	bool metrics_secure_serving;	   /* metrics.secureServing, true */
	bool metrics_enable_authn_authz;   /* metrics.enableAuthnAuthz, true */
	int64_t worker_run_as_user;	   /* worker.runAsUser, 0 */
	char *worker_selinux_type;	   /* worker.seLinuxType, "spc_t" */
	char *worker_firmware_host_path;   /* worker.firmwareHostPath, "/lib/firmware" */
	int64_t job_gc_delay_ns;	   /* job.gcDelay (Go duration), 0 */
	enum kmm_builder job_builder;	   /* job.builder: "kaniko" (default) or "buildah" */
	enum kmm_image_check image_check;  /* imageCheck: "registry" (default) or "pullPod" */
	char *registry_ca_file; /* registryCAFile: PEM bundle for image checks, or NULL */
	/*
	 * registryAllowedNetworks / registryDeniedNetworks: IP addresses or CIDRs
	 * the image checks may / may not connect to, on top of the built-in policy
	 * (kmm/registry.h); NULL-terminated, or NULL.
	 */
	char **registry_allowed_networks;
	char **registry_denied_networks;

	/* From the environment (and --hub). */
	enum kmm_op_mode mode;	  /* KMM_MANAGED=1: SPOKE; --hub: HUB (set before from_env) */
	char *operator_namespace; /* OPERATOR_NAMESPACE, required */
	char *worker_image;	  /* RELATED_IMAGE_WORKER, required but on the hub */
	char *build_image;	  /* RELATED_IMAGE_BUILD, optional */
	char *sign_image;	  /* RELATED_IMAGE_SIGN, optional */
};

/* Fills c with upstream's defaults (and no environment). */
int kmm_operator_config_init(struct kmm_operator_config *c);

/*
 * Applies a controller_config.yaml document on top of c. Keys are checked
 * strictly; booleans accept what upstream's YAML decoder accepts for a bool
 * field (true/false and the YAML 1.1 spellings yes/no/on/off/y/n in their
 * usual cases). `source` names the input in errors.
 */
int kmm_operator_config_parse(struct kmm_operator_config *c, const char *yaml, size_t len,
			      const char *source, struct kmm_error **err);

/*
 * Reads OPERATOR_NAMESPACE, the RELATED_IMAGE_* variables and KMM_MANAGED
 * (Go's strconv.ParseBool spellings; true makes a standalone config a
 * spoke's, and is refused on the hub) through getenv_fn (secure_getenv in
 * production; tests pass their own).
 */
int kmm_operator_config_from_env(struct kmm_operator_config *c,
				 char *(*getenv_fn)(const char *name), struct kmm_error **err);

void kmm_operator_config_free(struct kmm_operator_config *c);

struct kmm_kube_client;
struct kmm_metrics;
/*
 * Reads controller_config.yaml from config_file or else from the ConfigMap
 * config_map in the operator's namespace through kube (the GET counted in
 * m's rest_client_requests_total); either may be NULL. A ConfigMap that does
 * not exist leaves the defaults and sets *ret_map_missing.
 */
int kmm_operator_config_load(struct kmm_operator_config *c, struct kmm_kube_client *kube,
			     struct kmm_metrics *m, const char *config_map, const char *config_file,
			     bool *ret_map_missing, struct kmm_error **err);
/* The files the configuration names (registryCAFile) can be read and hold what they should. */
int kmm_operator_config_check_files(const struct kmm_operator_config *c, struct kmm_error **err);

/*
 * Parses a Go duration ("300ms", "1.5h", "2h45m", "0"): a sequence of decimal
 * numbers with units ns, us, µs, ms, s, m, h. Returns nanoseconds.
 */
int kmm_parse_go_duration(const char *s, int64_t *ret_ns);

#endif
