/*
 * fuzz_control.c - the control socket's request lines (ckpt/control.h),
 * decoded and checked as the control thread does before it runs one
 * (control_check_line(): no machine, no socket).
 *
 * The input is one line without its newline. Contract: a refused line
 * gets -EINVAL, RW_ELIMIT (a label too long) or -ENOMEM, and its reply is
 * one JSON object on one line: {"ok":false,"error":<the code's name>,
 * "message":<a string>}; an accepted line is a JSON object whose "cmd" is a
 * command control.h lists, and gets no reply here.
 */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "control.h"
#include "fuzz_common.h"

static const char *const cmds[] = { "checkpoint", "rollback", "pin",  "unpin",
				    "pause",	  "resume",   "status", "quit" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *reply = NULL;
	json_error_t jerr;
	json_t *j, *v;
	int ret;

	ret = control_check_line((const char *)data, size, &reply);
	if (ret) {
		FUZZ_CHECK(ret == -EINVAL || ret == RW_ELIMIT || ret == -ENOMEM, "error %d (%s)",
			   ret, rw_errname(ret));
		if (!reply) {
			FUZZ_CHECK(ret == -ENOMEM, "no reply to a refused line");
			return 0;
		}
		FUZZ_CHECK(!strchr(reply, '\n'), "the reply is more than one line: %s", reply);
		j = json_loads(reply, 0, &jerr);
		FUZZ_CHECK(j && json_is_object(j), "the reply is not a JSON object: %s", reply);
		FUZZ_CHECK(json_is_false(json_object_get(j, "ok")), "reply without ok false: %s",
			   reply);
		v = json_object_get(j, "error");
		FUZZ_CHECK(json_is_string(v) && strcmp(json_string_value(v), rw_errname(ret)) == 0,
			   "reply names another error than %s: %s", rw_errname(ret), reply);
		v = json_object_get(j, "message");
		FUZZ_CHECK(json_is_string(v) && json_string_length(v) > 0,
			   "reply without a message: %s", reply);
		FUZZ_CHECK(json_object_size(j) == 3, "reply with other fields: %s", reply);
		json_decref(j);
		free(reply);
		return 0;
	}
	FUZZ_CHECK(reply == NULL, "a reply to an accepted line: %s", reply);
	if (size && data[size - 1] == '\r')
		size--;
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	FUZZ_CHECK(j && json_is_object(j), "accepted a line that is not a JSON object");
	v = json_object_get(j, "cmd");
	FUZZ_CHECK(json_is_string(v), "accepted a line without a string cmd");
	ret = 1;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(json_string_value(v), cmds[i]) == 0)
			ret = 0;
	FUZZ_CHECK(ret == 0, "accepted the unknown command '%s'", json_string_value(v));
	json_decref(j);
	return 0;
}
