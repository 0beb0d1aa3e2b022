/* main.c - bin/nexus_cli, the bundle's own runtime (placeholder). */
#include <stdio.h>
#include <string.h>

#include "onnxruntime_c_api.h"

int main(int argc, char **argv)
{
	const OrtApi *ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);

	if (argc > 1 && !strcmp(argv[1], "--version")) {
		printf("nexus_cli %s (onnx runtime %s)\n", NX_VERSION,
		       OrtGetApiBase()->GetVersionString());
		return 0;
	}
	(void)ort;
	fprintf(stderr, "usage: nexus_cli info|run|selftest\n");
	return 2;
}
