/* libFuzzer target: config.json text into the OCI config parser and
 * validator (including the seccomp profile check).  The bundle directory is
 * a real temporary directory with a rootfs/, so valid inputs get past the
 * root.path check and exercise the rest of the validation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "guest/oci_config.h"

/* Under $TMPDIR: `make fuzz-smoke` points it at a directory it removes. */
static char bundle[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *tmp = getenv("TMPDIR");
	snprintf(bundle, sizeof(bundle), "%s/quiver-fuzz-config-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(bundle))
		abort();
	char rootfs[sizeof(bundle) + 16];
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", bundle);
	if (mkdir(rootfs, 0755) < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_config *cfg = NULL;
	struct qerr err;

	qerr_clear(&err);
	int r = guest_config_parse(bundle, "config.json", (const char *)data, size, &cfg, &err);
	if (r == 0) {
		if (!cfg)
			abort();
		guest_config_free(cfg);
	} else if (cfg || err.msg[0] == '\0') {
		/* A failure must not hand out a config and must say why. */
		abort();
	}
	return 0;
}
