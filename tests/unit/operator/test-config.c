/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/operator-config.h"

static int parse(struct kmm_operator_config *c, const char *yaml, struct kmm_error **err)
{
	assert_int_equal(kmm_operator_config_init(c), 0);
	return kmm_operator_config_parse(c, yaml, strlen(yaml), "controller_config.yaml", err);
}

static void test_defaults_match_upstream(void **state)
{
	struct kmm_operator_config c;

	assert_int_equal(parse(&c, "", NULL), 0);
	assert_string_equal(c.health_probe_bind_address, ":8081");
	assert_int_equal(c.webhook_port, 9443);
	assert_true(c.leader_election_enabled);
	assert_string_equal(c.leader_election_resource_id, "kmm.sigs.x-k8s.io");
	assert_string_equal(c.metrics_bind_address, "0.0.0.0:8443");
	assert_true(c.metrics_secure_serving);
	assert_true(c.metrics_enable_authn_authz);
	assert_int_equal(c.worker_run_as_user, 0);
	assert_string_equal(c.worker_selinux_type, "spc_t");
	assert_string_equal(c.worker_firmware_host_path, "/lib/firmware");
	assert_int_equal(c.job_gc_delay_ns, 0);
	assert_int_equal(c.job_builder, KMM_BUILDER_KANIKO);
	assert_int_equal(c.image_check, KMM_IMAGE_CHECK_REGISTRY);
	assert_null(c.registry_ca_file);
	kmm_operator_config_free(&c);
}

static void test_full_upstream_file(void **state)
{
	struct kmm_operator_config c;
	const char *yaml = "healthProbeBindAddress: :9081\n"
			   "webhookPort: 9444\n"
			   "imageCheck: pullPod\n"
			   "registryCAFile: /etc/kmm/registry-ca.pem\n"
			   "leaderElection:\n"
			   "  enabled: false\n"
			   "  resourceID: my-lease\n"
			   "metrics:\n"
			   "  bindAddress: \"0\"\n"
			   "  secureServing: false\n"
			   "  enableAuthnAuthz: false\n"
			   "worker:\n"
			   "  runAsUser: 1000\n"
			   "  seLinuxType: container_t\n"
			   "  firmwareHostPath: /var/lib/firmware\n"
			   "job:\n"
			   "  gcDelay: 1h30m\n"
			   "  builder: buildah\n";

	assert_int_equal(parse(&c, yaml, NULL), 0);
	assert_string_equal(c.health_probe_bind_address, ":9081");
	assert_int_equal(c.webhook_port, 9444);
	assert_false(c.leader_election_enabled);
	assert_string_equal(c.leader_election_resource_id, "my-lease");
	assert_string_equal(c.metrics_bind_address, "0");
	assert_false(c.metrics_secure_serving);
	assert_false(c.metrics_enable_authn_authz);
	assert_int_equal(c.worker_run_as_user, 1000);
	assert_string_equal(c.worker_selinux_type, "container_t");
	assert_string_equal(c.worker_firmware_host_path, "/var/lib/firmware");
	assert_int_equal(c.job_gc_delay_ns, 5400LL * 1000000000LL);
	assert_int_equal(c.job_builder, KMM_BUILDER_BUILDAH);
	assert_int_equal(c.image_check, KMM_IMAGE_CHECK_PULL_POD);
	assert_string_equal(c.registry_ca_file, "/etc/kmm/registry-ca.pem");
	kmm_operator_config_free(&c);
}

static void test_yaml_1_1_booleans_like_upstream(void **state)
{
	static const char *const cases[][2] = {
		{ "yes", "1" }, { "Yes", "1" }, { "ON", "1" }, { "y", "1" },	 { "'on'", "1" },
		{ "no", "0" },	{ "Off", "0" }, { "N", "0" },  { "False", "0" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kmm_operator_config c;
		char yaml[64];

		snprintf(yaml, sizeof(yaml), "leaderElection:\n  enabled: %s\n", cases[i][0]);
		assert_int_equal(parse(&c, yaml, NULL), 0);
		assert_int_equal(c.leader_election_enabled, cases[i][1][0] == '1');
		kmm_operator_config_free(&c);
	}
}

static void expect_error(const char *yaml, const char *message)
{
	struct kmm_operator_config c;
	struct kmm_error *err = NULL;

	assert_int_equal(parse(&c, yaml, &err), -EINVAL);
	assert_non_null(err);
	assert_string_equal(err->message, message);
	kmm_error_free(err);
	kmm_operator_config_free(&c);
}

static void test_bad_configuration_is_a_clear_error(void **state)
{
	expect_error("webhookPrt: 9443\n", "controller_config.yaml: unknown key 'webhookPrt'");
	expect_error("metrics:\n  bindAdress: x\n",
		     "controller_config.yaml: unknown key 'metrics.bindAdress'");
	expect_error("webhookPort: 70000\n",
		     "controller_config.yaml: webhookPort: expected a port number from 1 to 65535");
	expect_error("leaderElection:\n  enabled: maybe\n",
		     "controller_config.yaml: leaderElection.enabled: expected a boolean (true or "
		     "false)");
	expect_error("job:\n  gcDelay: 10\n",
		     "controller_config.yaml: job.gcDelay: expected a duration such as \"0s\", "
		     "\"90s\" or \"1h30m\"");
	expect_error("job:\n  builder: Kaniko\n",
		     "controller_config.yaml: job.builder: expected \"kaniko\" or \"buildah\"");
	expect_error("job:\n  builder: [buildah]\n",
		     "controller_config.yaml: job.builder: expected \"kaniko\" or \"buildah\"");
	expect_error("imageCheck: pullpod\n",
		     "controller_config.yaml: imageCheck: expected \"registry\" or \"pullPod\"");
	expect_error("imageCheck: true\n",
		     "controller_config.yaml: imageCheck: expected \"registry\" or \"pullPod\"");
	expect_error("worker: []\n", "controller_config.yaml: worker: expected a mapping");
	expect_error("- a\n", "controller_config.yaml: expected a mapping at the top level");
	expect_error("worker:\n  runAsUser: root\n",
		     "controller_config.yaml: worker.runAsUser: expected an integer");
	expect_error("a: 1\n---\nb: 2\n",
		     "controller_config.yaml: expected one YAML document, found 2");
}

static void test_registry_networks(void **state)
{
	struct kmm_operator_config c;
	struct kmm_error *err = NULL;
	static const char *const bad[] = {
		"registryAllowedNetworks: 169.254.169.254\n",
		"registryAllowedNetworks: [169.254.169.254/33]\n",
		"registryAllowedNetworks: [169.254.1.0/16]\n",
		"registryDeniedNetworks: [metadata.google.internal]\n",
		"registryDeniedNetworks: [1]\n",
	};

	assert_int_equal(parse(&c, "", NULL), 0);
	assert_null(c.registry_allowed_networks);
	assert_null(c.registry_denied_networks);
	kmm_operator_config_free(&c);
	assert_int_equal(parse(&c,
			       "registryAllowedNetworks: [169.254.169.254/32, \"fd00:ec2::254\"]\n"
			       "registryDeniedNetworks:\n  - 10.0.0.0/8\n",
			       NULL),
			 0);
	assert_string_equal(c.registry_allowed_networks[0], "169.254.169.254/32");
	assert_string_equal(c.registry_allowed_networks[1], "fd00:ec2::254");
	assert_null(c.registry_allowed_networks[2]);
	assert_string_equal(c.registry_denied_networks[0], "10.0.0.0/8");
	kmm_operator_config_free(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(&c, bad[i], &err), -EINVAL);
		if (!strstr(kmm_error_message(err), "registry"))
			fail_msg("%s: %s", bad[i], kmm_error_message(err));
		kmm_error_free(err);
		err = NULL;
		kmm_operator_config_free(&c);
	}
}

static void test_go_durations(void **state)
{
	static const struct {
		const char *text;
		int64_t ns;
	} ok[] = {
		{ "0", 0 },
		{ "0s", 0 },
		{ "300ms", 300000000 },
		{ "1.5h", 5400000000000 },
		{ "2h45m", 9900000000000 },
		{ "1m30s", 90000000000 },
		{ "10us", 10000 },
		{ "10\xc2\xb5s", 10000 },
		{ "-5s", -5000000000 },
		{ ".5s", 500000000 },
	};
	static const char *const bad[] = { "", "5", "s", "1d", "1.s5", "--1s", "1h 30m" };
	int64_t ns;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(kmm_parse_go_duration(ok[i].text, &ns), 0);
		assert_int_equal(ns, ok[i].ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(kmm_parse_go_duration(bad[i], &ns), -EINVAL);
}

static char *fake_env(const char *name)
{
	if (strcmp(name, "OPERATOR_NAMESPACE") == 0)
		return (char *)"kmm-operator-system";
	if (strcmp(name, "RELATED_IMAGE_WORKER") == 0)
		return (char *)"registry.local/kmm/worker:v1";
	if (strcmp(name, "RELATED_IMAGE_SIGN") == 0)
		return (char *)"";
	return NULL;
}

static char *empty_env(const char *name)
{
	(void)name;
	return NULL;
}

static void test_environment(void **state)
{
	struct kmm_operator_config c;
	_cleanup_error_ struct kmm_error *err = NULL;

	kmm_operator_config_init(&c);
	assert_int_equal(kmm_operator_config_from_env(&c, fake_env, NULL), 0);
	assert_string_equal(c.operator_namespace, "kmm-operator-system");
	assert_string_equal(c.worker_image, "registry.local/kmm/worker:v1");
	assert_null(c.build_image);
	assert_null(c.sign_image);
	kmm_operator_config_free(&c);

	kmm_operator_config_init(&c);
	assert_int_equal(kmm_operator_config_from_env(&c, empty_env, &err), -EINVAL);
	assert_string_equal(err->message, "environment variable OPERATOR_NAMESPACE must be set");
	kmm_operator_config_free(&c);
	kmm_operator_config_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_match_upstream),
		cmocka_unit_test(test_full_upstream_file),
		cmocka_unit_test(test_yaml_1_1_booleans_like_upstream),
		cmocka_unit_test(test_bad_configuration_is_a_clear_error),
		cmocka_unit_test(test_go_durations),
		cmocka_unit_test(test_registry_networks),
		cmocka_unit_test(test_environment),
	};
	return cmocka_run_group_tests_name("operator-config", tests, NULL, NULL);
}
