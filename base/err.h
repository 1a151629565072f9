/*
 * err.h - rewind's error codes.
 *
 * Every function that can fail returns 0 on success or a negative code:
 * either a negative errno (-ENOMEM, -EINVAL, ...) or one of the project codes
 * below, which live in a reserved band far below any errno value.
 * rw_strerror() decodes both bands.
 *
 * Codes are stable: tests and JSON output refer to their names.
 */
#ifndef RW_VMM_ERR_H
#define RW_VMM_ERR_H

#define RW_MUST_CHECK __attribute__((warn_unused_result))

enum rw_err {
	RW_EBASE = -1000,
	RW_ECORRUPT = -1000,   /* data failed a structural check */
	RW_EVERSION = -1001,   /* format version not supported */
	RW_ECHECKSUM = -1002,  /* checksum mismatch */
	RW_ENOTFOUND = -1003,  /* no such checkpoint, record or key */
	RW_ESTORE_FULL = -1004,/* the store cannot grow (disk full) */
	RW_ENOKVMCAP = -1005,  /* KVM lacks a capability rewind needs */
	RW_EBADIMAGE = -1006,  /* file is not a guest image rewind can load */
	RW_EGUEST = -1007,     /* the guest did something that ended the VM */
	RW_ENOTSTORE = -1008,  /* directory is not a rewind store */
	RW_ECOLLISION = -1009, /* two different contents under one hash */
	RW_ESTOPPED = -1010,   /* the VM has stopped */
	RW_EBUSY = -1011,      /* another operation is in progress */
	RW_EPOISONED = -1012,  /* an earlier step failed; only abort is allowed */
	RW_ELIMIT = -1013,     /* a size or count is beyond a hard limit */
	RW_EINJECTED = -1014,  /* failure injected by a test hook */
	RW_ENOKVM = -1015,     /* KVM cannot be opened (missing, no permission) */
	RW_ELAST = -1015,
};

/* Message for a code from either band; never NULL, never freed. */
const char *rw_strerror(int err);

/* Stable short name of a code ("RW_ECORRUPT", "ENOENT"); never NULL. */
const char *rw_errname(int err);

#endif
