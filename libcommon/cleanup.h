/* Scope-bound release of resources, crun style: a variable declared with one
 * of these attributes is released when it goes out of scope, so an early
 * return cannot leak it.  Hand ownership on with steal_fd()/steal_ptr(). */
#ifndef QUIVER_CLEANUP_H
#define QUIVER_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void qc_freep(void *p)
{
	free(*(void **)p);
}

static inline void qc_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void qc_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static inline void qc_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define cleanup_free   __attribute__((cleanup(qc_freep)))
#define cleanup_close  __attribute__((cleanup(qc_closep)))
#define cleanup_fclose __attribute__((cleanup(qc_fclosep)))
#define cleanup_dir    __attribute__((cleanup(qc_closedirp)))

#define steal_fd(fd)                                                                               \
	({                                                                                         \
		int steal_fd_tmp_ = (fd);                                                          \
		(fd) = -1;                                                                         \
		steal_fd_tmp_;                                                                     \
	})

#define steal_ptr(p)                                                                               \
	({                                                                                         \
		__typeof__(p) steal_ptr_tmp_ = (p);                                                \
		(p) = NULL;                                                                        \
		steal_ptr_tmp_;                                                                    \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
