/*
 * fuzz_queue_msg.c - queue_msg_parse() (common/queue.h) on arbitrary bytes:
 * the messages workers and the queue's Lua scripts put on the event stream
 * (schemas/queue-message.schema.json), which the coordinator never trusts.
 * No Redis is involved.
 */
#include <string.h>

#include "fuzz_common.h"
#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_msg m;
	char err[256];
	if (queue_msg_parse(&m, (const char *)data, size, err, sizeof err) == 0) {
		const char *s[] = { m.worker, m.variant, m.key, m.phase, m.level, m.text,
				    m.sha256, m.path, m.error, m.host, m.status };
		for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
			if (s[i])
				(void)strlen(s[i]);
		queue_msg_release(&m);
	} else {
		(void)strlen(err);   /* the reason is always a terminated string */
	}
	return 0;
}
