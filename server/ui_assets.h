/* ui_assets.h: the static files of the /ui/ page, embedded in archevald
 * (ui_assets.c is generated from server/ui/ by server/ui/embed.sh).
 *
 * Read-only data: any thread. */
#ifndef AE_SERVER_UI_ASSETS_H
#define AE_SERVER_UI_ASSETS_H

#include <stddef.h>

typedef struct {
  const char *path;         /* "/ui/", "/ui/app.js", ... */
  const char *content_type; /* static */
  const unsigned char *data;
  size_t len;
} ae_ui_asset;

/* Every file, ended by an entry whose path is NULL. */
extern const ae_ui_asset ae_ui_assets[];

#endif
