/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the registry client may connect. Image references come from Module
 * authors, so without a policy the operator (and the worker) would open
 * connections to any address they name, cloud metadata services included.
 * Every address curl is about to connect to (after DNS, after redirects,
 * token realms too) goes through kmm_registry_policy_check().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/registry/registry-internal.h"

struct net {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
	const char *label; /* why it is refused (built-in entries) */
};

struct kmm_registry_policy {
	struct net *allow, *deny;
	size_t n_allow, n_deny;
};

/*
 * Refused unless allowed: link-local ranges (where metadata services live)
 * and the metadata addresses that are not link-local. The specific entries
 * come first so a refusal names the service.
 */
static const struct net builtin_deny[] = {
	{ AF_INET, { 169, 254, 169, 254 }, 32, "a cloud metadata address" },
	{ AF_INET, { 169, 254, 170, 2 }, 32, "the container metadata address" },
	{ AF_INET, { 100, 100, 100, 200 }, 32, "a cloud metadata address (Alibaba)" },
	{ AF_INET, { 168, 63, 129, 16 }, 32, "a cloud platform address (Azure WireServer)" },
	{ AF_INET, { 192, 0, 0, 192 }, 32, "a cloud metadata address (Oracle)" },
	{ AF_INET6,
	  { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54 },
	  128,
	  "a cloud metadata address (AWS IPv6)" },
	{ AF_INET, { 169, 254, 0, 0 }, 16, "link-local" },
	{ AF_INET6, { 0xfe, 0x80 }, 10, "link-local" },
};

static const struct kmm_registry_policy default_policy = {
	.deny = (struct net *)builtin_deny,
	.n_deny = KMM_ARRAY_SIZE(builtin_deny),
};

const struct kmm_registry_policy *kmm_registry_policy_default(void)
{
	return &default_policy;
}

static bool prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (!rest)
		return true;
	return ((a[full] ^ b[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static bool net_contains(const struct net *n, int family, const unsigned char *addr)
{
	return n->family == family && prefix_match(n->addr, addr, n->prefix);
}

/* "a.b.c.d", "a.b.c.d/n", "v6", "v6/n"; host bits must be zero. */
static int parse_net(const char *s, struct net *ret, struct kmm_error **err)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	struct net n = { 0 };
	unsigned max;

	if (hlen == 0 || hlen >= sizeof(host))
		return kmm_error_make(err, EINVAL, "'%.64s' is not an IP address or CIDR", s);
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, n.addr) == 1)
		n.family = AF_INET;
	else if (inet_pton(AF_INET6, host, n.addr) == 1)
		n.family = AF_INET6;
	else
		return kmm_error_make(err, EINVAL, "'%.64s' is not an IP address or CIDR", s);
	max = n.family == AF_INET ? 32 : 128;
	n.prefix = max;
	if (slash) {
		char *end;
		long p;

		errno = 0;
		p = strtol(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end || errno || p < 0 || p > (long)max)
			return kmm_error_make(err, EINVAL,
					      "'%.64s': the prefix length must be 0 to %u", s, max);
		n.prefix = (unsigned)p;
	}
	for (unsigned bit = n.prefix; bit < max; bit++)
		if (n.addr[bit / 8] & (0x80 >> (bit % 8)))
			return kmm_error_make(
			    err, EINVAL, "'%.64s' has address bits set beyond /%u", s, n.prefix);
	*ret = n;
	return 0;
}

static int parse_list(const char *const *list, const char *what, struct net **ret, size_t *ret_n,
		      struct kmm_error **err)
{
	_cleanup_free_ struct net *nets = NULL;
	size_t n = 0;

	while (list && list[n])
		n++;
	if (n > 1024)
		return kmm_error_make(err, E2BIG, "%s: more than 1024 entries", what);
	nets = calloc(n ? n : 1, sizeof(*nets));
	if (!nets)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (parse_net(list[i], &nets[i], err) < 0)
			return kmm_error_wrap(err, "%s", what);
	*ret = TAKE_PTR(nets);
	*ret_n = n;
	return 0;
}

void kmm_registry_policy_free(struct kmm_registry_policy *p)
{
	if (!p || p == &default_policy)
		return;
	free(p->allow);
	if (p->deny != builtin_deny)
		free(p->deny);
	free(p);
}

int kmm_registry_policy_new(const char *const *allow, const char *const *deny,
			    struct kmm_registry_policy **ret, struct kmm_error **err)
{
	_cleanup_(kmm_registry_policy_freep) struct kmm_registry_policy *p = NULL;
	_cleanup_free_ struct net *extra = NULL;
	size_t n_extra = 0;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->deny = (struct net *)builtin_deny;
	r = parse_list(allow, "allowed networks", &p->allow, &p->n_allow, err);
	if (r < 0)
		return r;
	r = parse_list(deny, "denied networks", &extra, &n_extra, err);
	if (r < 0)
		return r;
	p->deny = calloc(KMM_ARRAY_SIZE(builtin_deny) + n_extra, sizeof(*p->deny));
	if (!p->deny)
		return -ENOMEM;
	memcpy(p->deny, builtin_deny, sizeof(builtin_deny));
	for (size_t i = 0; i < n_extra; i++) {
		extra[i].label = "in the operator's denied networks";
		p->deny[KMM_ARRAY_SIZE(builtin_deny) + i] = extra[i];
	}
	p->n_deny = KMM_ARRAY_SIZE(builtin_deny) + n_extra;
	*ret = TAKE_PTR(p);
	return 0;
}

/*
 * IPv6 forms that reach an IPv4 address: mapped (::ffff:a.b.c.d), the
 * deprecated compatible form (::a.b.c.d) and the NAT64 well-known prefix
 * (64:ff9b::a.b.c.d). Returns the IPv4 address in out.
 */
static bool embedded_v4(const unsigned char *a6, unsigned char out[4])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const unsigned char compat[12] = { 0 };
	static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b };

	if (memcmp(a6, mapped, 12) != 0 && memcmp(a6, nat64, 12) != 0 &&
	    !(memcmp(a6, compat, 12) == 0 && (a6[12] || a6[13])))
		return false;
	memcpy(out, a6 + 12, 4);
	return true;
}

static const struct net *find(const struct net *nets, size_t n, int family,
			      const unsigned char *addr)
{
	for (size_t i = 0; i < n; i++)
		if (net_contains(&nets[i], family, addr))
			return &nets[i];
	return NULL;
}

int kmm_registry_policy_check(const struct kmm_registry_policy *p, const struct sockaddr *sa,
			      size_t len, char *why, size_t size)
{
	char text[INET6_ADDRSTRLEN] = "?";
	unsigned char addr[16], v4[4];
	const struct net *hit = NULL;
	int family;

	if (!p)
		p = &default_policy;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		family = AF_INET6;
		memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
	} else {
		/* curl only opens TCP sockets to IP addresses: anything else is odd. */
		snprintf(why, size, "address family %d is not IPv4 or IPv6", sa->sa_family);
		return -EPERM;
	}
	inet_ntop(family, addr, text, sizeof(text));
	/* An allowed network wins over any refusal, the embedded IPv4 form too. */
	if (find(p->allow, p->n_allow, family, addr))
		return 0;
	if (family == AF_INET6 && embedded_v4(addr, v4)) {
		if (find(p->allow, p->n_allow, AF_INET, v4))
			return 0;
		hit = find(p->deny, p->n_deny, AF_INET, v4);
	}
	if (!hit)
		hit = find(p->deny, p->n_deny, family, addr);
	if (!hit)
		return 0;
	snprintf(why, size, "%s is %s", text, hit->label);
	return -EPERM;
}

int kmm_registry_policy_check_text(const struct kmm_registry_policy *p, const char *ip, char *why,
				   size_t size)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in s4 = { .sin_family = AF_INET };

	if (inet_pton(AF_INET, ip, &s4.sin_addr) == 1)
		return kmm_registry_policy_check(p, (struct sockaddr *)&s4, sizeof(s4), why, size);
	if (inet_pton(AF_INET6, ip, &s6.sin6_addr) == 1)
		return kmm_registry_policy_check(p, (struct sockaddr *)&s6, sizeof(s6), why, size);
	return -EINVAL;
}
