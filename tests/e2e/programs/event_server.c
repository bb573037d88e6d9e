/*
 * A libevent-style line echo server: a listening TCP socket on 127.0.0.1
 * (port argv[1], 0 for an ephemeral one) in the main thread's epoll, and
 * three worker threads, each with its own epoll and an eventfd the main
 * thread wakes it with. The main thread accepts and hands connections to
 * the workers in turn (queue, then a write of 1 to the worker's eventfd);
 * a worker adds them to its epoll and answers each line "L" of a client
 * with "worker K: L". Prints "PORT p" and READY.
 *
 *   event_server PORT CONNECTIONS LINES
 *
 * Lines must be "c<C> n<N>": C the same on a connection, N 1, 2, 3, ...
 * there (so a line lost or repeated across the checkpoint shows).
 *
 * After SIGUSR1 the main thread stops the workers (a stop flag, then the
 * eventfd) and checks: CONNECTIONS were accepted and LINES answered in
 * all; each worker took exactly the connections handed to it, and its
 * eventfd gave it exactly the count written to it; no epoll, eventfd or
 * socket call failed and no line was malformed or out of order.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "subject.h"

#define WORKERS 3
#define MAX_FD 1024
#define WAKE_TAG UINT64_MAX

struct worker {
  int id;
  int ep, efd;
  pthread_t th;
  pthread_mutex_t mu;
  int queue[64];
  int queued;
  int stop;
  long handed;   /* by the main thread, under mu */
  long written;  /* to efd, by the main thread */
  long adopted;  /* by the worker */
  long wakeups;  /* the sum of the counts it read from efd */
  long lines;
  int errors;
};

struct conn {
  int client;   /* C of its lines, 0 before the first */
  int next;     /* N its next line must have */
  size_t len;
  char buf[512];
};

static struct worker workers[WORKERS];
static struct conn conns[MAX_FD];

static void worker_error(struct worker *w, const char *fmt, const char *what) {
  printf("FAIL: worker %d: ", w->id);
  printf(fmt, what, strerror(errno));
  printf("\n");
  fflush(stdout);
  w->errors++;
}

static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    buf += n;
    len -= (size_t)n;
  }
  return 1;
}

static void answer(struct worker *w, int fd, struct conn *c, char *line) {
  int client = 0, n = 0;
  char tail;
  if (sscanf(line, "c%d n%d%c", &client, &n, &tail) != 2 || client <= 0 || (c->client && client != c->client) ||
      n != c->next) {
    printf("FAIL: worker %d: fd %d: line '%s', want c%d n%d\n", w->id, fd, line, c->client, c->next);
    fflush(stdout);
    w->errors++;
  }
  c->client = client;
  c->next = n + 1;
  char reply[600];
  int len = snprintf(reply, sizeof(reply), "worker %d: %s\n", w->id, line);
  if (!send_all(fd, reply, (size_t)len)) worker_error(w, "%s: %s", "send");
  w->lines++;
}

static void serve(struct worker *w, int fd) {
  struct conn *c = &conns[fd];
  for (;;) {
    ssize_t n = recv(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      if (n < 0) worker_error(w, "%s: %s", "recv");
      if (epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL)) worker_error(w, "%s: %s", "EPOLL_CTL_DEL");
      close(fd);
      memset(c, 0, sizeof(*c));
      return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    char *nl;
    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
      *nl = 0;
      answer(w, fd, c, c->buf);
      size_t used = (size_t)(nl + 1 - c->buf);
      memmove(c->buf, nl + 1, c->len - used);
      c->len -= used;
    }
    if (c->len == sizeof(c->buf) - 1) {
      printf("FAIL: worker %d: fd %d: a line longer than %zu bytes\n", w->id, fd, c->len);
      w->errors++;
      c->len = 0;
    }
  }
}

/* The eventfd: take its count, then every queued connection. */
static int wake(struct worker *w) {
  uint64_t v = 0;
  ssize_t r = read(w->efd, &v, sizeof(v));
  if (r < 0 && errno == EAGAIN) return 0;
  if (r != 8) {
    worker_error(w, "%s: %s", "eventfd read");
    return 0;
  }
  w->wakeups += (long)v;
  pthread_mutex_lock(&w->mu);
  for (int i = 0; i < w->queued; i++) {
    int fd = w->queue[i];
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
    memset(&conns[fd], 0, sizeof(conns[fd]));
    conns[fd].next = 1;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev)) worker_error(w, "%s: %s", "EPOLL_CTL_ADD");
    w->adopted++;
  }
  w->queued = 0;
  int stop = w->stop;
  pthread_mutex_unlock(&w->mu);
  return stop;
}

static void *work(void *arg) {
  struct worker *w = arg;
  for (;;) {
    struct epoll_event evs[16];
    int n = epoll_wait(w->ep, evs, 16, -1);
    if (n < 0 && errno == EINTR) continue; /* as libevent: a stop (the checkpoint's) ends a wait */
    if (n < 0) {
      worker_error(w, "%s: %s", "epoll_wait");
      return NULL;
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == WAKE_TAG) {
        if (wake(w)) return NULL;
      } else if (evs[i].data.u64 < MAX_FD) {
        serve(w, (int)evs[i].data.u64);
      } else {
        printf("FAIL: worker %d: epoll_wait gave tag %llx\n", w->id, (unsigned long long)evs[i].data.u64);
        w->errors++;
      }
    }
  }
}

static void hand(struct worker *w, int fd) {
  pthread_mutex_lock(&w->mu);
  if (w->queued < 64) {
    w->queue[w->queued++] = fd;
    w->handed++;
  } else {
    close(fd);
    printf("FAIL: worker %d: its queue is full\n", w->id);
    w->errors++;
  }
  pthread_mutex_unlock(&w->mu);
  uint64_t one = 1;
  if (write(w->efd, &one, 8) != 8) {
    worker_error(w, "%s: %s", "eventfd write");
  } else {
    w->written++;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  const long want_conns = atol(argv[2]), want_lines = atol(argv[3]);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons((uint16_t)atoi(argv[1]))};
  socklen_t len = sizeof(a);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 16) ||
      getsockname(l, (struct sockaddr *)&a, &len)) {
    return 2;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = l};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev)) return 2;

  subject_install();
  sigset_t usr1, wait_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &wait_mask); /* the workers start with SIGUSR1 blocked */
  for (int i = 0; i < WORKERS; i++) {
    struct worker *w = &workers[i];
    w->id = i;
    pthread_mutex_init(&w->mu, NULL);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
    if (w->ep < 0 || w->efd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev)) return 2;
    pthread_create(&w->th, NULL, work, w);
  }
  printf("PORT %d\n", ntohs(a.sin_port));
  printf("READY %d\n", getpid());
  fflush(stdout);

  long accepted = 0;
  int errors = 0;
  while (!subject_go) {
    struct epoll_event ev;
    int n = epoll_pwait(ep, &ev, 1, -1, &wait_mask); /* SIGUSR1 only in here */
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      printf("FAIL: main: epoll_pwait: %s\n", strerror(errno));
      errors++;
      break;
    }
    for (;;) {
      int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        if (errno != EAGAIN && errno != EINTR) {
          printf("FAIL: main: accept: %s\n", strerror(errno));
          errors++;
        }
        break;
      }
      if (c >= MAX_FD) {
        close(c);
        continue;
      }
      hand(&workers[accepted++ % WORKERS], c);
    }
  }

  long lines = 0;
  for (int i = 0; i < WORKERS; i++) {
    struct worker *w = &workers[i];
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_mutex_unlock(&w->mu);
    uint64_t v = 1;
    if (write(w->efd, &v, 8) == 8) w->written++;
    pthread_join(w->th, NULL);
    uint64_t left = 0; /* a count the worker did not take before it saw the stop */
    if (read(w->efd, &left, 8) == 8) w->wakeups += (long)left;
    lines += w->lines;
    errors += w->errors;
    SUBJECT_CHECK(w->adopted == w->handed, "worker %d took %ld connections, %ld were handed to it", i, w->adopted,
                  w->handed);
    SUBJECT_CHECK(w->wakeups == w->written, "worker %d's eventfd gave %ld, %ld were written", i, w->wakeups,
                  w->written);
    printf("worker %d: %ld connections, %ld lines\n", i, w->adopted, w->lines);
  }
  SUBJECT_CHECK(accepted == want_conns, "%ld connections accepted, want %ld", accepted, want_conns);
  SUBJECT_CHECK(lines == want_lines, "%ld lines answered, want %ld", lines, want_lines);
  SUBJECT_CHECK(errors == 0, "%d errors", errors);
  return subject_verdict();
}
