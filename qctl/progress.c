/* A progress display for long operations (warming pools; later,
 * hibernating many sandboxes).  On a terminal one line is redrawn in place;
 * otherwise (a log, a pipe, CI) a line is printed when the text changed and
 * at least a second has passed since the last one, so that a log shows the
 * progress without a line per step. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qctl/qctl.h"

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void progress_init(struct progress *p, FILE *f, const char *what)
{
	memset(p, 0, sizeof(*p));
	p->f = f;
	p->tty = isatty(fileno(f));
	p->t0 = now_s();
	p->last_print = -1e9;
	snprintf(p->what, sizeof(p->what), "%s", what);
}

static void vshow(struct progress *p, bool final, const char *fmt, va_list ap)
{
	double t = now_s() - p->t0;
	char text[sizeof(p->last)];

	vsnprintf(text, sizeof(text), fmt, ap);
	if (p->tty) {
		/* \r, the line, then erase what a longer previous line left */
		fprintf(p->f, "\r%s: %s (%.1f s)\033[K%s", p->what, text, t, final ? "\n" : "");
	} else if (final || (strcmp(text, p->last) != 0 && t - p->last_print >= 1.0)) {
		fprintf(p->f, "%s: %s (%.1f s)\n", p->what, text, t);
		p->last_print = t;
		snprintf(p->last, sizeof(p->last), "%s", text);
	}
	fflush(p->f);
}

void progress_update(struct progress *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vshow(p, false, fmt, ap);
	va_end(ap);
}

void progress_done(struct progress *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vshow(p, true, fmt, ap);
	va_end(ap);
}
