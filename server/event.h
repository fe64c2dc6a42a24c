/* event.h: what a worker thread tells the loop: its engine opened, it is
 * ready, it failed, it started a job, it finished one.
 *
 * Events are embedded in their sender (the worker or the job), so posting
 * one never allocates; workers.c carries them to the loop. */
#ifndef AE_SERVER_EVENT_H
#define AE_SERVER_EVENT_H

struct ae_job;

typedef enum {
  AE_EV_OPENED,
  AE_EV_READY,
  AE_EV_FAILED,
  AE_EV_STARTED,
  AE_EV_DONE
} ae_event_kind;

typedef struct ae_event {
  ae_event_kind kind;
  int worker;
  struct ae_job *job;
  struct ae_event *next;
} ae_event;

#endif
