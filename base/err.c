#include "err.h"

#include <errno.h>
#include <string.h>

struct err_desc {
	int code;
	const char *name;
	const char *msg;
};

static const struct err_desc rw_errs[] = {
	{ RW_ECORRUPT, "RW_ECORRUPT", "data is corrupt" },
	{ RW_EVERSION, "RW_EVERSION", "unsupported format version" },
	{ RW_ECHECKSUM, "RW_ECHECKSUM", "checksum mismatch" },
	{ RW_ENOTFOUND, "RW_ENOTFOUND", "not found" },
	{ RW_ESTORE_FULL, "RW_ESTORE_FULL", "store is full (no space left on device)" },
	{ RW_ENOKVMCAP, "RW_ENOKVMCAP", "KVM lacks a required capability" },
	{ RW_EBADIMAGE, "RW_EBADIMAGE", "not a guest image rewind can load" },
	{ RW_EGUEST, "RW_EGUEST", "the guest stopped the VM" },
	{ RW_ENOTSTORE, "RW_ENOTSTORE", "not a rewind store" },
	{ RW_ECOLLISION, "RW_ECOLLISION", "hash collision: different content under one key" },
	{ RW_ESTOPPED, "RW_ESTOPPED", "the VM has stopped" },
	{ RW_EBUSY, "RW_EBUSY", "another operation is in progress" },
	{ RW_EPOISONED, "RW_EPOISONED", "an earlier step failed; only abort is allowed" },
	{ RW_ELIMIT, "RW_ELIMIT", "beyond a hard limit" },
	{ RW_EINJECTED, "RW_EINJECTED", "injected failure" },
	{ RW_ENOKVM, "RW_ENOKVM", "KVM is not available" },
};

static const struct err_desc *rw_find(int err)
{
	for (unsigned i = 0; i < sizeof(rw_errs) / sizeof(rw_errs[0]); i++)
		if (rw_errs[i].code == err)
			return &rw_errs[i];
	return NULL;
}

const char *rw_strerror(int err)
{
	const struct err_desc *d;

	if (err == 0)
		return "success";
	d = rw_find(err);
	if (d)
		return d->msg;
	if (err < 0 && err > RW_EBASE)
		return strerror(-err);
	return "unknown error";
}

const char *rw_errname(int err)
{
	const struct err_desc *d = rw_find(err);

	if (d)
		return d->name;
	if (err < 0 && err > RW_EBASE) {
		const char *n = strerrorname_np(-err);
		if (n)
			return n;
	}
	return "EUNKNOWN";
}
