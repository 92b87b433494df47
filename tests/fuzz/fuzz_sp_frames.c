/* libFuzzer target: hostile bytes from a client of a daemon's REP socket
 * into qsp_scan_request, frame after frame, as the loop reads them (whole,
 * or in pieces).  The invariants: no crash, no read past the input; a
 * whole request lies inside what came in, its backtrace is whole words
 * ending in the one word with the top bit, and nothing larger than the
 * limit is taken. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/sp.h"

#define MAX_REQUEST 4096

static void scan_all(const unsigned char *buf, size_t len, size_t step)
{
	size_t off = 0, have = step < len ? step : len;

	while (off < len) {
		size_t flen, hlen;
		int r = qsp_scan_request(buf + off, have - off, MAX_REQUEST, &flen, &hlen);
		if (r < 0) {
			if (r != -EPROTO && r != -EMSGSIZE && r != -EBADMSG)
				abort();
			return;
		}
		if (r == 0) {
			if (flen && (flen <= have - off || flen > 9 + MAX_REQUEST))
				abort();
			if (have == len)
				return; /* the rest never came */
			have = have + step < len ? have + step : len;
			continue;
		}
		if (flen > have - off || flen < 9 || hlen == 0 || hlen % 4 || hlen > 32 ||
		    9 + hlen > flen)
			abort();
		const unsigned char *h = buf + off + 9;
		for (size_t w = 0; w + 4 <= hlen; w += 4)
			if (!(h[w] & 0x80) != (w + 4 < hlen))
				abort(); /* top bit on the last word only */
		off += flen;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	scan_all(data, size, size);
	scan_all(data, size, 1);
	scan_all(data, size, 7);
	return 0;
}
