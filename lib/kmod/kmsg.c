/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading what the kernel logged while it refused a module, so an error can
 * quote it ("kernel: vmk_b: Unknown symbol vmk_a_add (err -2)").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "lib/kmod/kmod-internal.h"

void kmm_kmsg_open(struct kmm_kmsg *m)
{
	m->fd = open(KMM_KMSG_PATH, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (m->fd >= 0 && lseek(m->fd, 0, SEEK_END) < 0) {
		close(m->fd);
		m->fd = -1;
	}
}

void kmm_kmsg_close(struct kmm_kmsg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

KMM_TESTABLE const char *kmm_kmsg_record_text(const char *record)
{
	const char *semi = strchr(record, ';');
	const char *nl = strchr(record, '\n');

	/* "prio,seq,usec,flags;" : digits and commas (and a flag char) only. */
	if (!semi || (nl && nl < semi) || semi == record)
		return NULL;
	for (const char *p = record; p < semi; p++) {
		if (!((*p >= '0' && *p <= '9') || *p == ',' || *p == '-' || *p == '+' || *p == 'c'))
			return NULL;
	}
	return semi + 1;
}

static void append_line(struct kmm_buf *out, const char *text)
{
	size_t n = strcspn(text, "\n");

	if (n > 240)
		n = 240;
	if (out->len > 0)
		(void)kmm_buf_append_str(out, " | ");
	(void)kmm_buf_append(out, text, n);
}

unsigned kmm_kmsg_collect(struct kmm_kmsg *m, struct kmm_buf *out, unsigned max_lines)
{
	/* /dev/kmsg hands out one record per read(); a plain file (tests) many. */
	char rec[8192];
	unsigned lines = 0;

	if (m->fd < 0)
		return 0;
	while (lines < max_lines) {
		ssize_t n = read(m->fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue; /* records overwritten meanwhile; go on with the next */
		if (n <= 0)
			break;
		rec[n] = '\0';
		for (char *p = rec; *p && lines < max_lines;) {
			char *nl = strchr(p, '\n');
			const char *text = kmm_kmsg_record_text(p);
			if (text) {
				append_line(out, text);
				lines++;
			}
			if (!nl)
				break;
			p = nl + 1;
		}
	}
	return lines;
}
