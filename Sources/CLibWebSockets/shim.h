#ifndef JOBSYNC_CLIBWEBSOCKETS_SHIM_H
#define JOBSYNC_CLIBWEBSOCKETS_SHIM_H
#include <libwebsockets.h>

/// `LWS_PRE` is a macro Swift cannot import: the headroom lws needs before a payload.
static inline size_t jobsync_lws_pre(void) { return LWS_PRE; }

#endif
