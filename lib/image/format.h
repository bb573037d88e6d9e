// The libckpt image format, defined once. docs/image-format.md explains it
// in prose; this header is the authority.
//
// An image is a stream of records, written front to back and read front to
// back without seeking (it may be a pipe or a socket):
//
//   ckpt_hdr{type=CKPT_HDR_IMAGE} ckpt_image_header
//   ckpt_hdr{...} payload, padded with zero bytes to a multiple of 8
//   ...
//   ckpt_hdr{type=CKPT_HDR_TAIL} ckpt_tail
//
// Every struct below is fixed-width, little-endian and 8-byte aligned, and
// its size is asserted. A record's payload may be longer than the struct a
// reader knows (a later minor version appended fields, or the record carries
// a variable tail such as a path); it is never shorter.

#ifndef LIBCKPT_LIB_IMAGE_FORMAT_H_
#define LIBCKPT_LIB_IMAGE_FORMAT_H_

#include <bit>
#include <cstddef>
#include <cstdint>

namespace ckpt::image {

static_assert(std::endian::native == std::endian::little,
              "the image is little-endian and written from native structs");

inline constexpr char kMagic[8] = {'L', 'I', 'B', 'C', 'K', 'P', 'T', '\0'};
// A reader refuses another major; a higher minor only appends fields and
// skippable records.
inline constexpr uint16_t kFormatMajor = 4;
inline constexpr uint16_t kFormatMinor = 6;
inline constexpr uint16_t kArchX86_64 = 1;
inline constexpr uint32_t kChecksumXxh3 = 1;

// Payloads are padded to this alignment.
inline constexpr uint64_t kAlign = 8;
inline constexpr uint64_t AlignUp(uint64_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }

// The header of every record.
struct ckpt_hdr {
  uint32_t type;   // RecordType
  uint32_t flags;  // RecordFlags; unknown bits are an error
  uint64_t len;    // payload bytes that follow, before padding
};
static_assert(sizeof(ckpt_hdr) == 16);

enum RecordFlags : uint32_t {
  // A reader that does not know this record's type may skip it. Without
  // this flag an unknown type is an error.
  kHdrSkippable = 1u << 0,
};
inline constexpr uint32_t kKnownHdrFlags = kHdrSkippable;

// No record, whatever its type, is longer than this; page contents are
// split across records (CKPT_HDR_PAGE_DATA) well below it.
inline constexpr uint64_t kMaxRecordLen = 64ull << 20;
// Largest page-content record a writer emits.
inline constexpr uint64_t kMaxPageDataLen = 16ull << 20;
// Most runs in one CKPT_HDR_PAGE_RUNS record.
inline constexpr uint64_t kMaxPageRuns = 65536;
// Most runs in a task's INHERITED record.
inline constexpr uint64_t kMaxInheritedRuns = 1ull << 22;
// Longest duration (a timer's interval or time left) a record may carry:
// a hundred years, in nanoseconds.
inline constexpr int64_t kMaxDurationNs = 100ll * 365 * 24 * 3600 * 1000000000;
// Largest path carried by a record (PATH_MAX).
inline constexpr uint32_t kMaxPathLen = 4096;

enum RecordType : uint32_t {
  CKPT_HDR_IMAGE = 1,  // ckpt_image_header; always the first record
  CKPT_HDR_TAIL = 2,   // ckpt_tail; always the last record
  CKPT_HDR_NOTE = 3,   // free text (UTF-8), skippable; for humans and tests

  // tree
  CKPT_HDR_TREE = 10,        // ckpt_tree: counts of what follows
  CKPT_HDR_PID = 11,         // ckpt_pid: one pid object
  CKPT_HDR_TASK_ENTRY = 12,  // ckpt_task_entry: one task of the tree

  // ipc: the tree's SysV IPC namespace
  CKPT_HDR_IPC = 20,  // ckpt_ipc: counts of what follows
  CKPT_HDR_SHM = 21,  // ckpt_shm: a shm segment; its page arrays follow (offsets)
  CKPT_HDR_MSQ = 22,  // ckpt_msq: a message queue; its messages follow
  CKPT_HDR_MSG = 23,  // ckpt_msg + text: one message
  CKPT_HDR_SEM = 24,  // ckpt_sem + u16 values[nsems]: a semaphore set

  // objects: shared kernel objects, each once, before any task refers to it
  CKPT_HDR_OBJECTS = 30,      // ckpt_objects: count of object records
  CKPT_HDR_FILE = 31,         // ckpt_file + path: an open file description
  CKPT_HDR_MAPPED_FILE = 32,  // ckpt_file + path: a file some VMA maps
  CKPT_HDR_PIPE = 33,         // ckpt_pipe + path + buffered bytes: a pipe or FIFO
  CKPT_HDR_GHOST = 34,        // ckpt_ghost + path: a deleted file's inode
  // 35 was GHOST_DATA (formats 1-3): a GHOST's contents are page arrays now.
  CKPT_HDR_SHMEM = 36,        // ckpt_shmem + name: a memfd or shared anonymous memory;
                              // its page arrays follow (offsets)
  CKPT_HDR_TIMERFD = 37,      // ckpt_timerfd: a timerfd
  CKPT_HDR_UNIX_SOCK = 38,    // ckpt_unix_sock + name + dir + peer name: a unix socket
  CKPT_HDR_INET_SOCK = 40,    // ckpt_inet_sock + filter + queued data: a TCP or UDP socket
  CKPT_HDR_EVENTFD = 41,      // ckpt_eventfd: an eventfd
  CKPT_HDR_SIGNALFD = 42,     // ckpt_signalfd: a signalfd
  CKPT_HDR_EPOLL = 43,        // ckpt_epoll: an epoll; its EPOLL_ITEM records follow
  CKPT_HDR_EPOLL_ITEM = 44,   // ckpt_epoll_item: one file an epoll watches
  CKPT_HDR_INOTIFY = 45,      // ckpt_inotify: an inotify; its INOTIFY_WATCH records follow
  CKPT_HDR_INOTIFY_WATCH = 46,  // ckpt_inotify_watch + path: one watch
  CKPT_HDR_FANOTIFY = 47,       // ckpt_fanotify: a fanotify group; its FANOTIFY_MARK records follow
  CKPT_HDR_FANOTIFY_MARK = 48,  // ckpt_fanotify_mark + path: one mark
  CKPT_HDR_NETLINK_SOCK = 49,   // ckpt_netlink_sock + u32 groups[nr_group_words]: a netlink socket
  CKPT_HDR_UNIX_QUEUE = 39,   // ckpt_unix_queue + messages: a unix socket's queued data and
                              // its backlog (a link record, after every object)
  CKPT_HDR_INET_OPTS = 90,    // ckpt_inet_opts + ckpt_sockopt[nr_opts]: the INET_SOCK before
                              // it has more options (its flag kInetMoreOptions)
  CKPT_HDR_PACKET_SOCK = 91,  // ckpt_packet_sock + ckpt_packet_mc[] + filter: a packet socket
  CKPT_HDR_PTY = 92,          // ckpt_pty + path + input + output: a pseudo-terminal pair (4.6)

  // per task
  CKPT_HDR_TASK = 50,       // ckpt_task: opens a task's section
  CKPT_HDR_CREDS = 51,      // ckpt_creds + u32 groups[nr_groups]
  CKPT_HDR_RLIMITS = 52,    // ckpt_rlimits
  CKPT_HDR_FS = 53,         // ckpt_fs + cwd + root
  CKPT_HDR_FD = 54,         // ckpt_fd: one fd table entry
  CKPT_HDR_LOCKS = 55,      // ckpt_locks: how many LOCK records follow
  CKPT_HDR_LOCK = 56,       // ckpt_lock: one advisory lock a task holds
  CKPT_HDR_MM = 60,         // ckpt_mm + u64 auxv[nr_auxv]
  CKPT_HDR_INHERITED = 64,  // ckpt_inherited + ckpt_page_run[]: pages a task keeps from its
                            // parent (after MM)
  CKPT_HDR_VMA = 61,        // ckpt_vma; its page arrays follow
  CKPT_HDR_PAGE_RUNS = 62,  // ckpt_page_run[]: addresses of a page array
  CKPT_HDR_PAGE_DATA = 63,  // raw contents of the pages named by the runs
  CKPT_HDR_SIGHAND = 70,    // ckpt_sighand
  CKPT_HDR_THREAD = 71,     // ckpt_thread; its xstate follows
  CKPT_HDR_XSTATE = 72,     // raw NT_X86_XSTATE area (XSAVE layout)
  CKPT_HDR_RESTART = 73,    // ckpt_restart: how the thread's interrupted syscall resumes
  CKPT_HDR_SIGINFO = 74,    // ckpt_siginfo: one pending signal
  CKPT_HDR_SIGNALS = 75,    // ckpt_signals: a process's interval timers and signal queue
  CKPT_HDR_POSIX_TIMER = 76,  // ckpt_posix_timer: one timer_create() timer
  CKPT_HDR_SECCOMP = 77,      // ckpt_seccomp: a thread's seccomp mode; its filters follow
  CKPT_HDR_SECCOMP_FILTER = 78,  // ckpt_seccomp_filter + struct sock_filter[nr_insns]
  CKPT_HDR_SCHED = 80,         // ckpt_sched: a process's oom_score_adj; its threads' follow
  CKPT_HDR_SCHED_THREAD = 81,  // ckpt_sched_thread + u64 cpus[nr_cpu_words]: one thread's
                               // scheduling policy, priority, nice and CPU affinity
};

// ---------------------------------------------------------------- framing

struct ckpt_image_header {
  char magic[8];                 // kMagic
  uint16_t major;                // kFormatMajor
  uint16_t minor;                // kFormatMinor
  uint16_t arch;                 // kArchX86_64
  uint16_t reserved0;
  uint32_t page_size;            // bytes
  uint32_t flags;                // ImageFlags
  uint64_t created_realtime_ns;  // CLOCK_REALTIME when the dump began
  uint64_t created_boottime_ns;  // CLOCK_BOOTTIME when the dump began
  char kernel_release[72];       // uname -r of the dumping kernel, NUL-padded
};
static_assert(sizeof(ckpt_image_header) == 112);

enum ImageFlags : uint32_t {
  kImageLeftRunning = 1u << 0,  // the dumped tree kept running afterwards
};

struct ckpt_tail {
  uint64_t nr_records;  // records before the tail, the image header included
  uint64_t checksum;    // of every byte before the tail record's header
  uint32_t checksum_algo;
  uint32_t reserved;
};
static_assert(sizeof(ckpt_tail) == 24);

// ---------------------------------------------------------------- tree

struct ckpt_tree {
  uint32_t nr_pids;   // CKPT_HDR_PID records that follow
  uint32_t nr_tasks;  // CKPT_HDR_TASK_ENTRY records after them
  uint32_t flags;     // TreeFlags
  uint32_t reserved;
};
static_assert(sizeof(ckpt_tree) == 16);

enum TreeFlags : uint32_t {
  kTreeContainer = 1u << 0,  // dumped in container mode: every pid is inside
};

// Deepest pid namespace nesting Linux allows (MAX_PID_NS_LEVEL).
inline constexpr uint32_t kMaxPidLevels = 32;

// A pid object: one pid with its number at every pid-namespace level, from
// the dumper's namespace (nr[0]) down to the innermost (nr[nr_levels-1]).
struct ckpt_pid {
  uint32_t objref;
  uint32_t nr_levels;
  int32_t nr[kMaxPidLevels];
};
static_assert(sizeof(ckpt_pid) == 136);

enum TaskState : uint32_t {
  kTaskAlive = 1,
  kTaskZombie = 2,
};

enum TaskEntryFlags : uint32_t {
  // The task shares its parent's fd table (clone with CLONE_FILES): its
  // section has no FD records, the parent's are its own.
  kTaskSharesParentFiles = 1u << 0,
  // Stopped by job control (stop_signo), and its parent has already
  // waited for that stop (WUNTRACED): it is not reported again.
  kTaskStopReported = 1u << 1,
  // Forked at restore from its parent once the parent's memory is in
  // place (an injected clone3), so that the private pages they shared at
  // the dump (copy-on-write since a fork, neither wrote them) are one
  // physical page again. Its MM record is followed by an INHERITED record.
  // Its parent is live; its children inherit too.
  kTaskInheritsMemory = 1u << 2,
  // Its parent made it and later siblings with CLONE_FILES, then gave
  // their fd table up (unshare): it is the first of them and restores the
  // table (16); or it shares the table of the nearest earlier sibling with
  // flag 16 and has no FD records (8).
  kTaskSharesSiblingFiles = 1u << 3,
  kTaskSiblingFilesHead = 1u << 4,
  // It shares its grandparent's fd table, which its parent had when it
  // made it and then gave up: the restore makes the parent with
  // CLONE_FILES, the task too, and the parent unshares. No FD records.
  kTaskSharesGrandparentFiles = 1u << 5,
};

// One task (thread group) of the tree, parents before their children.
struct ckpt_task_entry {
  uint32_t pid_ref;      // objref of the task's pid (= its tgid)
  uint32_t parent_ref;   // pid_ref of the parent task; 0 for the root
  uint32_t pgrp_ref;     // 0: the group is outside the dump
  uint32_t session_ref;  // 0: the session is outside the dump
  uint32_t state;        // TaskState
  int32_t exit_code;     // wait status of a zombie
  uint32_t nr_threads;
  uint32_t flags;  // TaskEntryFlags
  // kFreeAreaSize bytes of address space no mapping of the task uses: the
  // restore maps its trampoline there.
  uint64_t free_area;
  uint32_t ipc_ns_ref;  // objref of its IPC namespace (an IPC object); 0 for a zombie
  // A live task stopped by job control: the signal that stopped it
  // (SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU); 0 for a task that runs.
  uint32_t stop_signo;
};
static_assert(sizeof(ckpt_task_entry) == 48);

// ---------------------------------------------------------------- ipc

enum IpcFlags : uint32_t {
  // A namespace of the tree's own (not the dumper's).
  kIpcOwnNamespace = 1u << 0,
};

// One IPC namespace that tasks of the tree are in: an object of the
// objects section, referred to by ckpt_task_entry::ipc_ns_ref.
struct ckpt_ipc {
  uint32_t flags;  // IpcFlags
  uint32_t nr_shm;
  uint32_t nr_msq;
  uint32_t nr_sem;
  // The namespace's limits (kernel.shm*, msg*, sem sysctls), recorded for
  // a namespace of the tree's own and set again in a fresh one; 0 when not
  // recorded.
  uint64_t shmmax, shmall;
  uint32_t shmmni, shm_rmid_forced;
  uint32_t msgmax, msgmnb, msgmni;
  uint32_t sem[4];  // semmsl, semmns, semopm, semmni
  uint32_t objref;
  uint32_t nr_namespaces;  // IPC records in the image (the same in each)
  uint32_t reserved;
};
static_assert(sizeof(ckpt_ipc) == 80);

// The ownership and permissions every SysV object has (struct ipc_perm).
struct ckpt_ipc_perm {
  int32_t id;
  int32_t key;
  uint32_t uid, gid, cuid, cgid;
  uint32_t mode;
  uint32_t reserved;
};
static_assert(sizeof(ckpt_ipc_perm) == 32);

enum ShmFlags : uint32_t {
  kShmRemoved = 1u << 0,    // IPC_RMID while attached (SHM_DEST)
  kShmLocked = 1u << 1,     // SHM_LOCK
};

struct ckpt_shm {
  uint32_t objref;
  uint32_t flags;  // ShmFlags
  ckpt_ipc_perm perm;
  uint64_t size;
  int32_t cpid, lpid;
  uint64_t atime, dtime, ctime;
  uint64_t nr_pages;  // pages in the page arrays that follow (offsets in the segment)
};
static_assert(sizeof(ckpt_shm) == 88);

struct ckpt_msq {
  ckpt_ipc_perm perm;
  uint64_t qbytes;
  uint32_t nr_msgs;  // CKPT_HDR_MSG records that follow, oldest first
  uint32_t reserved;
};
static_assert(sizeof(ckpt_msq) == 48);

struct ckpt_msg {
  int64_t mtype;
  uint64_t size;  // bytes of text after the struct
};
static_assert(sizeof(ckpt_msg) == 16);
inline constexpr uint64_t kMaxMsgSize = 1u << 20;
inline constexpr uint32_t kMaxMsgs = 1u << 20;

struct ckpt_sem {
  ckpt_ipc_perm perm;
  uint32_t nsems;  // u16 values follow
  uint32_t reserved;
};
static_assert(sizeof(ckpt_sem) == 40);
inline constexpr uint32_t kMaxSems = 32000;

// ---------------------------------------------------------------- objects

struct ckpt_objects {
  uint32_t nr_objects;
  uint32_t fd_limit;  // every fd number of every task is below this
  uint32_t nr_links;  // link records after the objects (one per object whose kind has links)
  uint32_t reserved;
};
static_assert(sizeof(ckpt_objects) == 16);

enum ShmemFlags : uint32_t {
  kShmemMemfd = 1u << 0,  // made by memfd_create (name is its name)
};

// Shared memory without a file name: a memfd, or shared anonymous memory
// (restored as a memfd). The name (name_len bytes) follows; then page
// arrays whose runs are offsets in the object.
struct ckpt_shmem {
  uint32_t objref;
  uint32_t flags;  // ShmemFlags
  uint64_t size;
  uint32_t seals;  // F_GET_SEALS
  uint32_t mode;
  uint64_t nr_pages;
  uint32_t name_len;
  uint32_t reserved;
};
static_assert(sizeof(ckpt_shmem) == 40);

// A timerfd: its clock, its timer (time left counted from the
// checkpoint's start, relative to the restore's at restore) and the
// expirations not yet read.
struct ckpt_timerfd {
  uint32_t objref;
  int32_t clock;
  uint32_t settime_flags;  // TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET as set
  uint32_t reserved;
  uint64_t ticks;
  int64_t interval_ns;
  int64_t value_ns;  // 0: disarmed
};
static_assert(sizeof(ckpt_timerfd) == 40);

// An eventfd: its counter, and whether reads take one at a time
// (EFD_SEMAPHORE).
struct ckpt_eventfd {
  uint32_t objref;
  uint32_t semaphore;  // 0 or 1
  uint64_t count;      // at most 0xfffffffffffffffe
};
static_assert(sizeof(ckpt_eventfd) == 16);

// A signalfd: the signals it reads (bit N-1 for signal N). The signals
// themselves are the reading task's, restored with it.
struct ckpt_signalfd {
  uint32_t objref;
  uint32_t reserved;
  uint64_t sigmask;
};
static_assert(sizeof(ckpt_signalfd) == 16);

// An epoll instance; nr_items EPOLL_ITEM records follow.
struct ckpt_epoll {
  uint32_t objref;
  uint32_t nr_items;
};
static_assert(sizeof(ckpt_epoll) == 8);
inline constexpr uint32_t kMaxEpollItems = 1u << 20;

// One watch of an epoll: the kernel keys it by file and fd number, so it
// names both (the fd number may be closed since, a dup keeping the file).
struct ckpt_epoll_item {
  uint32_t file_ref;  // the FILE watched
  int32_t tfd;        // the fd number it was added under
  uint32_t events;    // as the kernel keeps them; a fired EPOLLONESHOT keeps only its flag bits
  uint32_t reserved;
  uint64_t data;      // epoll_data
};
static_assert(sizeof(ckpt_epoll_item) == 24);

// An inotify instance; nr_watches INOTIFY_WATCH records follow, in
// ascending wd order.
struct ckpt_inotify {
  uint32_t objref;
  uint32_t nr_watches;
};
static_assert(sizeof(ckpt_inotify) == 8);
inline constexpr uint32_t kMaxInotifyWatches = 1u << 20;
// The restore reaches a watch descriptor by taking every number below it
// in turn: beyond this it refuses.
inline constexpr int32_t kMaxInotifyWd = 1 << 22;

// One inotify watch: its descriptor, its mask (events and IN_ONESHOT,
// IN_EXCL_UNLINK...) and the watched inode, by path.
struct ckpt_inotify_watch {
  int32_t wd;
  uint32_t mask;
  uint32_t path_len;
  uint32_t reserved;
  uint64_t dev;  // st_dev of the inode when dumped
  uint64_t ino;
};
static_assert(sizeof(ckpt_inotify_watch) == 32);

// A fanotify group: fanotify_init()'s flags and event flags, as given
// (FAN_CLOEXEC and FAN_NONBLOCK included: fdinfo shows them; the
// descriptors' own are their FILEs'); nr_marks FANOTIFY_MARK records
// follow.
struct ckpt_fanotify {
  uint32_t objref;
  uint32_t nr_marks;
  uint32_t flags;
  uint32_t event_flags;
};
static_assert(sizeof(ckpt_fanotify) == 16);
inline constexpr uint32_t kMaxFanotifyMarks = 1u << 20;

enum FanotifyMarkType : uint32_t {
  kFanMarkInode = 1,
  kFanMarkMount = 2,
  kFanMarkFilesystem = 3,
};

// One fanotify mark: on an inode, a mount or a filesystem, named by a
// path (the inode's own, the mount's mount point, a mount of the
// filesystem), with its mask, ignore mask and mark flags
// (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE).
struct ckpt_fanotify_mark {
  uint32_t type;  // FanotifyMarkType
  uint32_t mflags;
  uint32_t mask;
  uint32_t ignored_mask;
  uint32_t path_len;
  uint32_t reserved;
  uint64_t dev;  // the inode's or filesystem's st_dev when dumped
  uint64_t ino;  // kFanMarkInode: the inode
};
static_assert(sizeof(ckpt_fanotify_mark) == 40);

// A netlink socket: its protocol (family), its port id and the groups it
// is bound to, the address it is connected to, its options and buffers;
// the multicast groups it belongs to follow, as a bitmap of u32 words
// (NETLINK_LIST_MEMBERSHIPS). Queued messages are not saved (refused).
struct ckpt_netlink_sock {
  uint32_t objref;
  uint32_t type;      // SOCK_RAW or SOCK_DGRAM
  uint32_t protocol;  // NETLINK_ROUTE, ...
  uint32_t flags;     // NetlinkFlags
  uint32_t portid;    // 0: never bound
  uint32_t dst_portid;
  uint32_t dst_groups;
  uint32_t sndbuf;    // SO_SNDBUF as read (the kernel's doubled value)
  uint32_t rcvbuf;
  uint32_t nr_group_words;
};
static_assert(sizeof(ckpt_netlink_sock) == 40);
inline constexpr uint32_t kMaxNetlinkGroupWords = 1024;

// A packet socket (AF_PACKET: SOCK_RAW, SOCK_DGRAM or the old
// SOCK_PACKET, format 4.5): what it receives (protocol, interface), its
// options, fanout group and memberships (ckpt_packet_mc[nr_mc] follow),
// then its classic filter (struct sock_filter[nr_filter]). Not saved,
// refused: packets queued to read, and PACKET_RX_RING/TX_RING rings.
struct ckpt_packet_sock {
  uint32_t objref;
  uint16_t type;      // SOCK_RAW, SOCK_DGRAM, SOCK_PACKET
  uint16_t protocol;  // the ethertype it receives, host order (0: none)
  uint32_t flags;     // PacketFlags
  int32_t ifindex;    // the interface it is bound to (0: every one)
  char ifname[16];    // that interface's name when dumped
  uint32_t version;   // PACKET_VERSION (TPACKET_V1..V3)
  uint32_t reserve;   // PACKET_RESERVE
  uint32_t copy_thresh;  // PACKET_COPY_THRESH
  uint32_t tstamp;    // PACKET_TIMESTAMP
  uint32_t fanout;    // PACKET_FANOUT as getsockopt gives it: id | type << 16 | flags << 24 (0: none)
  uint32_t vnet_hdr_sz;  // PACKET_VNET_HDR_SZ (0: none, or the kernel has no such option)
  uint32_t sndbuf;    // SO_SNDBUF, SO_RCVBUF as read
  uint32_t rcvbuf;
  uint32_t mark;      // SO_MARK
  int32_t priority;   // SO_PRIORITY
  int64_t rcvtimeo_ns;  // SO_RCVTIMEO, SO_SNDTIMEO (0: none)
  int64_t sndtimeo_ns;
  uint32_t tsflags;   // SO_TIMESTAMPING flags
  uint32_t nr_mc;     // ckpt_packet_mc that follow
  uint32_t nr_filter;  // struct sock_filter after them
  uint32_t reserved;
  uint64_t ino;       // its inode when dumped (names it in messages)
};
static_assert(sizeof(ckpt_packet_sock) == 112);

enum PacketFlags : uint32_t {
  kPacketBound = 1u << 0,      // bind() named an interface (ifindex, ifname)
  kPacketAuxdata = 1u << 1,    // PACKET_AUXDATA
  kPacketOrigdev = 1u << 2,    // PACKET_ORIGDEV
  kPacketVnetHdr = 1u << 3,    // PACKET_VNET_HDR
  kPacketLoss = 1u << 4,       // PACKET_LOSS
  kPacketQdiscBypass = 1u << 5,  // PACKET_QDISC_BYPASS
  kPacketIgnoreOutgoing = 1u << 6,  // PACKET_IGNORE_OUTGOING
  kPacketTxHasOff = 1u << 7,   // PACKET_TX_HAS_OFF
  kPacketFilterLocked = 1u << 8,  // SO_LOCK_FILTER
  kPacketTimestamp = 1u << 9,     // SO_TIMESTAMP
  kPacketTimestampNs = 1u << 10,  // SO_TIMESTAMPNS
  kPacketTimestampNew = 1u << 11,  // ... the _NEW forms (64-bit time in the messages)
  kPacketRxqOvfl = 1u << 12,      // SO_RXQ_OVFL
  kPacketKnownFlags = (1u << 13) - 1,
};

// One membership of a packet socket (PACKET_ADD_MEMBERSHIP), `count`
// times over.
struct ckpt_packet_mc {
  int32_t ifindex;
  uint16_t type;   // PACKET_MR_MULTICAST, _PROMISC, _ALLMULTI, _UNICAST
  uint16_t alen;
  uint32_t count;
  uint32_t reserved;
  uint8_t addr[32];
  char ifname[16];  // the interface's name when dumped
};
static_assert(sizeof(ckpt_packet_mc) == 64);
inline constexpr uint32_t kMaxPacketMc = 1024;

enum NetlinkFlags : uint32_t {
  kNetlinkPktinfo = 1u << 0,         // NETLINK_PKTINFO
  kNetlinkBroadcastError = 1u << 1,  // NETLINK_BROADCAST_ERROR
  kNetlinkNoEnobufs = 1u << 2,       // NETLINK_NO_ENOBUFS
  kNetlinkListenAllNsid = 1u << 3,   // NETLINK_LISTEN_ALL_NSID
  kNetlinkCapAck = 1u << 4,          // NETLINK_CAP_ACK
  kNetlinkExtAck = 1u << 5,          // NETLINK_EXT_ACK
  kNetlinkStrictChk = 1u << 6,       // NETLINK_GET_STRICT_CHK
};

// A pseudo-terminal pair (PTY): the tree's own (it holds the master), the
// terminal the dump's caller gave it (--shell-job: the restorer's at
// restore), or one whose master a process outside holds (--external
// tty:[MAJOR:MINOR]: an fd the restore is given). Only the tree's own
// saves its state. The path follows (a tree's own: the devpts directory as
// the tree saw it, "/dev/pts"; the others: the slave's path or the
// external name), then input_size bytes typed to the master that the
// slave has not read (in canonical mode, a byte equal to cc[VEOF] marks
// where ^D ended a line), then output_size bytes the slave wrote that the
// master has not read.
enum PtyFlags : uint32_t {
  kPtyCaller = 1u << 0,     // the caller's terminal (--shell-job)
  kPtyExternal = 1u << 1,   // an external one: path is its name
  kPtyLocked = 1u << 2,     // the slave is locked (TIOCSPTLCK)
  kPtyPacket = 1u << 3,     // the master is in packet mode (TIOCPKT)
  kPtyExclusive = 1u << 4,  // the slave is in exclusive mode (TIOCEXCL)
  kPtySlaveClosed = 1u << 5,  // every slave was closed: the master reads EIO
};
inline constexpr uint32_t kPtyOwnState = kPtyLocked | kPtyPacket | kPtyExclusive | kPtySlaveClosed;
inline constexpr uint32_t kMaxPtyIndex = 1u << 20;
// Bytes queued: typed (the line discipline's buffer holds 4095) and
// written (the master's buffer and the pair's flip buffers).
inline constexpr uint32_t kMaxPtyInput = 4095;
inline constexpr uint32_t kMaxPtyOutput = 65536;
struct ckpt_pty {
  uint32_t objref;
  uint32_t flags;   // PtyFlags
  uint32_t index;   // N of /dev/pts/N
  uint32_t path_len;
  // The slave's termios (as tcgetattr gives it: the line discipline's
  // flags, c_line, the control characters, the speeds).
  uint32_t iflag, oflag, cflag, lflag;
  uint32_t line;
  uint32_t ispeed, ospeed;
  uint8_t cc[32];
  uint16_t ws_row, ws_col, ws_xpixel, ws_ypixel;  // TIOCGWINSZ
  uint32_t input_size;
  uint32_t output_size;
  // The session it is the controlling terminal of (its leader's pid
  // objref; 0: none), and that session's foreground process group.
  uint32_t session_ref;
  uint32_t fg_pgrp_ref;
  // The slave's owner and permissions (grantpt, mesg, chmod).
  uint32_t mode;
  uint32_t uid, gid;
};
static_assert(sizeof(ckpt_pty) == 112);

enum FileKind : uint32_t {
  kFileRegular = 1,     // by path (MAPPED_FILE: on a GHOST target_ref when deleted)
  kFileDirectory = 2,
  kFileCharDevice = 3,
  kFilePipe = 4,        // an end of the PIPE target_ref
  kFileTty = 5,         // the dumper's terminal (--shell-job): the restorer's at restore
  kFileShmem = 6,       // a memfd: the SHMEM target_ref
  kFileTimerfd = 7,     // a timerfd: the TIMERFD target_ref
  kFileDeleted = 8,     // a regular file deleted while open: the GHOST target_ref
  kFileDeletedDir = 9,  // a directory removed while open: the GHOST target_ref
  kFileSymlink = 10,    // a symbolic link itself, open O_PATH|O_NOFOLLOW
  kFileDeletedCharDevice = 11,  // one of the plain character devices, its node unlinked
  kFileProcTask = 12,   // a file under /proc/PID of a task of the tree (target_ref: its pid)
  kFileDeletedSymlink = 13,  // a symlink open O_PATH|O_NOFOLLOW, unlinked (target_ref: GHOST)
  kFileUnixSocket = 14,  // a unix socket: the UNIX_SOCK target_ref
  kFileInetSocket = 15,  // a TCP or UDP socket: the INET_SOCK target_ref
  kFileEventfd = 16,     // an eventfd: the EVENTFD target_ref
  kFileSignalfd = 17,    // a signalfd: the SIGNALFD target_ref
  kFileEpoll = 18,       // an epoll: the EPOLL target_ref
  kFileInotify = 19,     // an inotify: the INOTIFY target_ref
  kFilePidfd = 20,       // a pidfd of a task of the tree (target_ref: its pid; O_EXCL: PIDFD_THREAD)
  kFilePidfdExited = 21,  // a pidfd of a process that has exited and was reaped
  kFileFanotify = 22,     // a fanotify group: the FANOTIFY target_ref
  kFileNetlinkSocket = 23,  // a netlink socket: the NETLINK_SOCK target_ref
  kFilePacketSocket = 24,   // a packet socket: the PACKET_SOCK target_ref (4.5)
  kFilePtyMaster = 25,      // the master of a pseudo-terminal (/dev/ptmx): the PTY target_ref (4.6)
  kFilePtySlave = 26,       // a slave (/dev/pts/N) of the PTY target_ref (4.6)
  kFilePtyCtty = 27,        // /dev/tty, open on the PTY target_ref (4.6)
};

// Shared by CKPT_HDR_FILE (an open description: flags and pos matter) and
// CKPT_HDR_MAPPED_FILE (a file opened to back mappings: flags give the
// access mode needed). The path follows the struct, path_len bytes, no NUL.
struct ckpt_file {
  uint32_t objref;
  uint32_t kind;   // FileKind
  uint32_t flags;  // open(2) flags
  uint32_t mode;   // st_mode
  uint64_t pos;
  uint64_t size;      // st_size when dumped; checked at restore
  uint64_t rdev;      // st_rdev of a character device
  uint64_t mtime_ns;  // st_mtime when dumped
  uint32_t path_len;
  uint32_t target_ref;  // the PIPE of a pipe end, the GHOST of a deleted file; else 0
  // The ELF build-id (NT_GNU_BUILD_ID) of a mapped file that has one, in
  // its first build_id_size bytes; checked at restore with size and mtime.
  uint32_t build_id_size;
  uint32_t reserved;
  uint64_t build_id[4];
  // Who gets SIGIO/SIGURG for it (F_SETOWN_EX), and with which signal
  // (F_SETSIG; 0: SIGIO).
  uint32_t owner_type;  // FileOwnerType
  uint32_t owner_ref;   // the owner's pid objref (a thread, process or group)
  uint32_t owner_sig;
  uint32_t reserved2;
};
static_assert(sizeof(ckpt_file) == 112);

enum FileOwnerType : uint32_t {
  kOwnerNone = 0,
  kOwnerTid = 1,   // F_OWNER_TID
  kOwnerPid = 2,   // F_OWNER_PID
  kOwnerPgrp = 3,  // F_OWNER_PGRP
};
inline constexpr uint32_t kMaxBuildId = 32;

enum PipeFlags : uint32_t {
  kPipeFifo = 1u << 0,      // a FIFO: path names it
  kPipeExternal = 1u << 1,  // shared with a process outside the tree: path is its
                            // name ("pipe:[ino]"), no data; the restore is given
                            // an fd to put in its place (--inherit-fd)
  kPipeDeleted = 1u << 2,   // a FIFO unlinked while open: made again next to path
                            // (with `mode`), opened and unlinked again
};

// A pipe (or FIFO) with the bytes it held: path (path_len bytes, FIFOs
// and external pipes only), then data_size bytes of buffered data.
struct ckpt_pipe {
  uint32_t objref;
  uint32_t flags;  // PipeFlags
  uint32_t capacity;   // F_GETPIPE_SZ
  uint32_t data_size;  // bytes buffered, after the path
  uint32_t path_len;
  uint32_t mode;  // permission bits of a deleted FIFO; else 0
};
static_assert(sizeof(ckpt_pipe) == 24);
inline constexpr uint64_t kMaxPipeData = 16ull << 20;

// ------------------------------------------------------------ unix sockets

enum UnixState : uint32_t {
  kUnixUnconnected = 0,  // bound or not
  kUnixListening = 1,
  kUnixConnected = 2,    // to peer_ref (stream, seqpacket: both ways; dgram: one way)
};

enum UnixFlags : uint32_t {
  kUnixExternal = 1u << 0,     // its peer is outside the tree: name is "unix:[ino]", nothing
                               // else is saved; the restore is given an fd (--inherit-fd)
  kUnixPassCred = 1u << 1,     // SO_PASSCRED
  kUnixNameHidden = 1u << 2,   // bound to a path its file no longer is at: bound again
                               // where no one finds it
  kUnixNameBorrowed = 1u << 3, // its name is its listener's (an accepted socket)
  kUnixPairMaker = 1u << 4,    // connected (stream, seqpacket, or an unnamed dgram pair), and
                               // written before its peer: makes both ends
  kUnixPairTaker = 1u << 5,    // ... the other end: takes what its peer made
  kUnixPeerGone = 1u << 6,     // connected, its peer closed since
  kUnixPending = 1u << 7,      // a client whose connection waits, not accepted, in the
                               // backlog of the listener peer_ref
  kUnixPeerByName = 1u << 8,   // a dgram socket connected to a socket outside the tree:
                               // connected again by the peer's name
  kUnixPeerBorrowed = 1u << 9, // the pair maker's peer has a borrowed name (peer name)
  kUnixFilterLocked = 1u << 10,  // SO_LOCK_FILTER on its filter (4.3)
};
inline constexpr uint32_t kUnixKnownFlags = (1u << 11) - 1;

// A unix socket: the struct, then name_len bytes of its address
// (sun_path: a path, or a NUL and an abstract name), dir_len bytes of the
// directory a relative path is bound in, and peer_name_len bytes of the
// name its peer is connected to or borrows.
struct ckpt_unix_sock {
  uint32_t objref;
  uint32_t type;      // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  uint32_t state;     // UnixState
  uint32_t flags;     // UnixFlags
  uint32_t shutdown;  // bit 0: receive, bit 1: send (as sock_diag says)
  uint32_t backlog;   // a listener's listen() backlog
  uint32_t sndbuf;    // SO_SNDBUF, SO_RCVBUF as getsockopt gives them
  uint32_t rcvbuf;
  int32_t peek_off;   // SO_PEEK_OFF (-1: off)
  int32_t rcvlowat;   // SO_RCVLOWAT
  int64_t rcvtimeo_ns;  // SO_RCVTIMEO, SO_SNDTIMEO (0: none)
  int64_t sndtimeo_ns;
  uint32_t peer_ref;  // the peer (connected), the listener (pending), else 0
  uint32_t name_len;
  uint32_t dir_len;
  uint32_t mode;      // the socket file's permission bits (a path name it owns)
  uint32_t uid;       // ... and its owner
  uint32_t gid;
  uint32_t peer_name_len;
  // SO_PEERCRED: the uid and gid this end sees for its peer (a listener:
  // whoever called listen()); kUnixNoCred: none. The connection is made
  // again with those ids (the pid is the restorer's).
  uint32_t cred_uid;
  uint64_t ino;       // its inode when dumped (names it in messages)
  uint32_t cred_gid;
  // A pair maker: what its peer sees (cred_* of the other end); a client
  // waiting in a backlog: the ids its listener's side is to see (those of
  // the task that holds it).
  uint32_t pair_cred_uid;
  uint32_t pair_cred_gid;
  uint32_t nr_filter;  // struct sock_filter after the names: its classic BPF filter (4.3)
};
static_assert(sizeof(ckpt_unix_sock) == 112);
inline constexpr uint32_t kUnixNoCred = 0xffffffffu;

// A socket's receive queue, and a listener's backlog: the struct, then
// nr_msgs messages, then nr_pending times (ckpt_unix_pending, its
// messages). A message is a ckpt_unix_msg, the sender's address, nr_fds
// u32 FILE objrefs (SCM_RIGHTS), then len bytes.
struct ckpt_unix_queue {
  uint32_t objref;
  uint32_t nr_msgs;
  uint32_t nr_pending;
  uint32_t reserved;
  uint64_t data_size;  // bytes of data of all its messages
};
static_assert(sizeof(ckpt_unix_queue) == 24);

enum UnixMsgFlags : uint32_t {
  kUnixMsgCreds = 1u << 0,  // SCM_CREDENTIALS: pid (pid_ref when a task of the tree), uid, gid
};

struct ckpt_unix_msg {
  uint32_t len;
  uint32_t addr_len;  // sockaddr_un bytes from sun_path on; 0: none
  uint32_t nr_fds;
  uint32_t flags;     // UnixMsgFlags
  int32_t pid;        // as the dumper saw it
  uint32_t pid_ref;   // the tree's pid object of `pid`, or 0
  uint32_t uid;
  uint32_t gid;
};
static_assert(sizeof(ckpt_unix_msg) == 32);

// One connection in a listener's backlog: its client (0: the client
// closed since), and how many messages wait on it.
struct ckpt_unix_pending {
  uint32_t client_ref;
  uint32_t nr_msgs;
  uint32_t reserved;
  uint32_t reserved2;
};
static_assert(sizeof(ckpt_unix_pending) == 16);

inline constexpr uint64_t kMaxUnixQueueData = 32ull << 20;
inline constexpr uint32_t kMaxUnixMsgs = 1u << 20;
inline constexpr uint32_t kMaxUnixPending = 65536;
inline constexpr uint32_t kMaxUnixMsgFds = 253;  // SCM_MAX_FD

// An IPv4 or IPv6 socket: TCP (not connected, bound, listening, or
// established) or UDP / UDP-Lite. Addresses are in network byte order (an
// IPv4 one in the first 4 bytes), ports in host order. After the struct:
// nr_filter struct sock_filter (its classic BPF filter), then data_size
// bytes: a TCP connection's send queue (sent_len bytes sent and not yet
// acknowledged, then unsent_len bytes not yet sent) and its receive queue
// (recv_len bytes); or nr_dgrams datagrams, each a ckpt_inet_dgram and its
// bytes, padded to 8.
//
// An established TCP connection is made again in repair mode (TCP_REPAIR)
// with its sequence numbers, queues, window and negotiated options, so
// that its peer sees no reset. When the dump killed the tree, the
// connection is kept from being reset meanwhile by a network lock: the
// nftables table "inet ckpt_lock_<lock_id, 16 hex digits>", which the
// restore deletes when it is done, or when it fails once it has read an
// INET_SOCK (a restore that fails before leaves it: nft delete table).
enum InetState : uint32_t {
  kInetClosed = 0,       // not connected: unbound, or bound (src_port)
  kInetListening = 1,    // TCP listening
  kInetEstablished = 2,  // TCP established (repaired), or UDP connected
};

enum InetFlags : uint32_t {
  kInetReuseAddr = 1u << 0,
  kInetReusePort = 1u << 1,
  kInetKeepAlive = 1u << 2,
  kInetNoDelay = 1u << 3,    // TCP_NODELAY
  kInetCork = 1u << 4,       // TCP_CORK
  kInetOobInline = 1u << 5,
  kInetBroadcast = 1u << 6,
  kInetV6Only = 1u << 7,     // IPV6_V6ONLY
  kInetFreebind = 1u << 8,   // IP_FREEBIND
  kInetFilterLocked = 1u << 9,  // SO_LOCK_FILTER
  kInetLinger = 1u << 10,    // SO_LINGER on, for `linger` seconds
  kInetBound = 1u << 11,     // bound to src_addr:src_port
  // A TCP client whose connection waited in its listener's backlog (a
  // listener of the tree): connected again for real once the listener is
  // back, then its data (unsent_len bytes: what the listener's side had
  // received, then what it had not sent yet) sent again.
  kInetPending = 1u << 12,
  // A connection whose peer ended its side (its FIN came: CLOSE_WAIT,
  // LAST_ACK, CLOSING): rcv_seq + recv_len is the FIN's sequence number,
  // and the restore sends the FIN again, from the peer's address.
  kInetFinIn = 1u << 13,
  // A connection this side ended (shutdown SHUT_WR or close: FIN_WAIT1,
  // FIN_WAIT2, LAST_ACK, CLOSING), its send queue empty: snd_seq is its
  // FIN's sequence number, and the restore shuts it down again.
  kInetFinOut = 1u << 14,
  // An INET_OPTS record follows this one: options a fresh socket of its
  // kind does not have (format 4.5).
  kInetMoreOptions = 1u << 15,
  kInetKnownFlags = (1u << 16) - 1,
};

// TCP options negotiated at the handshake (tcp_info's tcpi_options).
enum InetTcpOptions : uint32_t {
  kInetTcpTimestamps = 1u << 0,
  kInetTcpSack = 1u << 1,
  kInetTcpWscale = 1u << 2,
};

struct ckpt_inet_sock {
  uint32_t objref;
  uint16_t family;    // AF_INET, AF_INET6
  uint16_t type;      // SOCK_STREAM, SOCK_DGRAM, SOCK_RAW (4.5)
  // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE; IPPROTO_ICMP, IPPROTO_ICMPV6
  // with SOCK_DGRAM (a ping socket: src_port is its echo identifier); any
  // with SOCK_RAW (src_port is the protocol, as getsockname shows it).
  // A raw or ping socket connected: dst_port 0.
  uint32_t protocol;
  uint32_t state;     // InetState
  uint32_t flags;     // InetFlags
  uint32_t shutdown;  // bit 0 receive, bit 1 send
  uint8_t src_addr[16];
  uint8_t dst_addr[16];
  uint16_t src_port;
  uint16_t dst_port;
  uint32_t backlog;   // listening: listen()'s backlog
  uint32_t sndbuf;    // SO_SNDBUF, SO_RCVBUF as getsockopt gave them
  uint32_t rcvbuf;
  int32_t rcvlowat;   // SO_RCVLOWAT
  int32_t linger;     // SO_LINGER seconds (kInetLinger)
  int64_t rcvtimeo_ns;  // SO_RCVTIMEO, SO_SNDTIMEO (0: none)
  int64_t sndtimeo_ns;
  uint32_t mark;      // SO_MARK
  int32_t priority;   // SO_PRIORITY
  int32_t tos;        // IP_TOS, or IPV6_TCLASS
  int32_t ttl;        // IP_TTL, or IPV6_UNICAST_HOPS
  uint32_t keepidle;  // TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT
  uint32_t keepintvl;
  uint32_t keepcnt;
  uint32_t user_timeout;  // TCP_USER_TIMEOUT, ms
  char congestion[16];    // TCP_CONGESTION
  char bind_dev[16];      // SO_BINDTODEVICE; empty: none
  // An established TCP connection (state kInetEstablished, TCP):
  uint32_t snd_seq;     // sequence number of the send queue's first byte
  uint32_t rcv_seq;     // ... of the receive queue's first byte
  uint32_t sent_len;    // send queue: sent, not yet acknowledged
  uint32_t unsent_len;  // ... not yet sent
  uint32_t recv_len;    // receive queue: received, not yet read
  uint32_t mss;         // TCP_MAXSEG
  uint32_t tcp_options;  // InetTcpOptions
  uint16_t snd_wscale;
  uint16_t rcv_wscale;
  uint32_t timestamp;   // TCP_TIMESTAMP
  uint32_t snd_wl1;     // TCP_REPAIR_WINDOW
  uint32_t snd_wnd;
  uint32_t max_window;
  uint32_t rcv_wnd;
  uint32_t rcv_wup;
  uint32_t nr_filter;   // struct sock_filter that follow
  uint64_t lock_id;     // its network lock (0: none)
  uint64_t ino;         // its inode when dumped (names it in messages)
  uint32_t nr_dgrams;   // UDP: datagrams queued to read
  int32_t peek_off;     // SO_PEEK_OFF (-1: none)
  uint64_t data_size;   // bytes after the filter
};
static_assert(sizeof(ckpt_inet_sock) == 256);

// One queued datagram of a UDP socket, from its sender's address.
struct ckpt_inet_dgram {
  uint32_t len;
  uint16_t family;  // of the sender's address: AF_INET, AF_INET6
  uint16_t port;    // host order
  uint8_t addr[16];
};
static_assert(sizeof(ckpt_inet_dgram) == 24);

// Socket options that INET_SOCK's own fields do not name, each as
// getsockopt gave it (an int, or a struct such as ICMP_FILTER's).
struct ckpt_inet_opts {
  uint32_t objref;   // its INET_SOCK
  uint32_t nr_opts;  // ckpt_sockopt that follow
};
static_assert(sizeof(ckpt_inet_opts) == 8);

struct ckpt_sockopt {
  int32_t level;  // SOL_SOCKET, SOL_IP, SOL_IPV6, SOL_TCP, SOL_UDP, SOL_RAW, SOL_ICMPV6
  int32_t name;
  uint32_t len;   // bytes of value used
  uint32_t reserved;
  uint8_t value[32];
};
static_assert(sizeof(ckpt_sockopt) == 48);
inline constexpr uint32_t kMaxSockOpts = 128;

inline constexpr uint64_t kMaxInetQueueData = 64ull << 20;
inline constexpr uint32_t kMaxInetDgrams = 1u << 16;

// A file that was deleted while open or mapped, or a directory removed
// while open or a working directory (empty, then: mode and owner only):
// recreated at restore (next to its old path), opened, and deleted again. Its data follow as
// page arrays (PAGE_RUNS whose runs are offsets in the file, PAGE_DATA),
// nr_pages pages in all; what no run covers is a hole (a sparse file
// stays sparse). The last page of a size that is not a multiple of pages
// is cut at the size.
struct ckpt_ghost {
  uint32_t objref;
  uint32_t mode;
  uint32_t uid;
  uint32_t gid;
  uint64_t size;
  uint32_t path_len;  // the path it had, without " (deleted)"
  uint32_t nr_pages;
};
static_assert(sizeof(ckpt_ghost) == 32);

// ---------------------------------------------------------------- per task

struct ckpt_task {
  uint32_t pid_ref;
  uint32_t personality;
  char comm[16];
  uint32_t umask;
  uint32_t pdeath_signal;
  uint32_t dumpable;
  uint32_t child_subreaper;
  uint32_t no_new_privs;
  uint32_t thp_disable;
  uint32_t nr_threads;  // CKPT_HDR_THREAD records in this section
  uint32_t nr_fds;      // CKPT_HDR_FD records in this section
  uint32_t membarrier;  // MembarrierFlags: the process's membarrier() registrations
  uint32_t reserved;
};
static_assert(sizeof(ckpt_task) == 64);

// membarrier() registrations a process has (each probed at dump with its
// command, which fails with EPERM unless registered). The global
// expedited one cannot be seen from outside: every restored process is
// registered for it, which only makes it take part in other processes'
// global barriers.
enum MembarrierFlags : uint32_t {
  kMembarrierPrivateExpedited = 1u << 0,
  kMembarrierSyncCore = 1u << 1,
  kMembarrierRseq = 1u << 2,
};

struct ckpt_creds {
  uint32_t uid, euid, suid, fsuid;
  uint32_t gid, egid, sgid, fsgid;
  uint64_t cap_inheritable;
  uint64_t cap_permitted;
  uint64_t cap_effective;
  uint64_t cap_bounding;
  uint64_t cap_ambient;
  uint32_t securebits;
  uint32_t nr_groups;  // u32 supplementary gids follow
};
static_assert(sizeof(ckpt_creds) == 80);
inline constexpr uint32_t kMaxGroups = 65536;

inline constexpr uint32_t kNrRlimits = 16;  // RLIM_NLIMITS
struct ckpt_rlimits {
  uint64_t cur[kNrRlimits];
  uint64_t max[kNrRlimits];
};
static_assert(sizeof(ckpt_rlimits) == 256);

// cwd (cwd_len bytes) then root (root_len bytes) follow.
struct ckpt_fs {
  uint32_t cwd_len;
  uint32_t root_len;
  uint32_t cwd_ref;   // the GHOST of a working directory that was removed; else 0
  uint32_t root_ref;  // likewise of a root directory (4.1; a reserved zero before)
};
static_assert(sizeof(ckpt_fs) == 16);

struct ckpt_fd {
  int32_t fd;
  uint32_t fd_flags;  // FD_CLOEXEC
  uint32_t file_ref;  // objref of a CKPT_HDR_FILE object
  uint32_t reserved;
};
static_assert(sizeof(ckpt_fd) == 16);

// ---------------------------------------------------------------- locks

// The advisory locks a task holds (its section's "locks" part): flock()
// and OFD locks belong to an open file description, POSIX locks to the
// task's fd table; each is taken again through one of the task's fds.
struct ckpt_locks {
  uint32_t nr_locks;
  uint32_t reserved;
};
static_assert(sizeof(ckpt_locks) == 8);
inline constexpr uint32_t kMaxLocks = 65536;

enum LockKind : uint32_t {
  kLockFlock = 1,  // flock()
  kLockPosix = 2,  // fcntl(F_SETLK)
  kLockOfd = 3,    // fcntl(F_OFD_SETLK)
};

struct ckpt_lock {
  int32_t fd;     // an fd of the task on the locked description
  uint32_t kind;  // LockKind
  uint32_t type;  // F_RDLCK 0 or F_WRLCK 1 (flock: LOCK_SH or LOCK_EX)
  uint32_t reserved;
  int64_t start;  // byte range (0 and 0 for flock)
  int64_t len;    // 0: to the end of the file
};
static_assert(sizeof(ckpt_lock) == 32);

// Mirrors struct prctl_mm_map's addresses; auxv (nr_auxv u64 words)
// follows the struct.
struct ckpt_mm {
  uint64_t start_code, end_code;
  uint64_t start_data, end_data;
  uint64_t start_brk, brk;
  uint64_t start_stack;
  uint64_t arg_start, arg_end;
  uint64_t env_start, env_end;
  uint32_t exe_ref;  // MAPPED_FILE objref of the executable
  uint32_t nr_vmas;  // CKPT_HDR_VMA records that follow
  uint32_t nr_auxv;
  uint32_t flags;
  uint64_t nr_pages;  // pages saved over all VMAs
};
static_assert(sizeof(ckpt_mm) == 112);
inline constexpr uint32_t kMaxAuxvWords = 512;
inline constexpr uint32_t kMaxVmas = 1u << 20;

enum VmaKind : uint32_t {
  kVmaAnon = 1,        // private or shared anonymous memory
  kVmaFile = 2,        // a mapping of file_ref
  kVmaHeap = 3,        // [heap]
  kVmaStack = 4,       // [stack]
  kVmaVdso = 5,        // [vdso]
  kVmaVvar = 6,        // [vvar]
  kVmaVvarVclock = 7,  // [vvar_vclock]
  kVmaSysvShm = 8,     // an attachment of the SHM segment file_ref
  kVmaShmem = 9,       // a mapping of the SHMEM object file_ref (memfd, shared anonymous)
};

// Advice and flags that /proc/PID/smaps shows as VmFlags.
enum VmaAdvice : uint64_t {
  kAdvHugepage = 1u << 0,    // hg: MADV_HUGEPAGE
  kAdvNoHugepage = 1u << 1,  // nh: MADV_NOHUGEPAGE
  kAdvDontDump = 1u << 2,    // dd: MADV_DONTDUMP
  kAdvDontFork = 1u << 3,    // dc: MADV_DONTFORK
  kAdvWipeOnFork = 1u << 4,  // wf: MADV_WIPEONFORK
  kAdvMergeable = 1u << 5,   // mg: MADV_MERGEABLE
  kAdvLocked = 1u << 6,      // lo: mlock
  kAdvSequential = 1u << 7,  // sr: MADV_SEQUENTIAL
  kAdvRandom = 1u << 8,      // rr: MADV_RANDOM
  kAdvLockOnFault = 1u << 9, // lf: mlock2(MLOCK_ONFAULT) (with kAdvLocked)
  kAdvSealed = 1u << 10,     // sl: mseal(), once the restore has done with the VMA
};
// A VMA's mapping type may also be MAP_DROPPABLE (anonymous memory the
// kernel may free under pressure; kernel 6.11 and later).
inline constexpr uint32_t kMapDroppable = 0x08;

struct ckpt_vma {
  uint64_t start, end;
  uint64_t pgoff;     // byte offset into file_ref
  uint32_t prot;      // PROT_READ | PROT_WRITE | PROT_EXEC
  uint32_t flags;     // MAP_PRIVATE or MAP_SHARED, | MAP_GROWSDOWN, | MAP_ANONYMOUS, | MAP_NORESERVE
  uint32_t kind;      // VmaKind
  uint32_t file_ref;  // MAPPED_FILE, SHM or SHMEM objref; 0 for anonymous kinds
  uint64_t advice;    // VmaAdvice
  uint64_t nr_pages;  // pages of this VMA in the page arrays that follow
};
static_assert(sizeof(ckpt_vma) == 56);

// A run of consecutive pages; a CKPT_HDR_PAGE_RUNS payload is an array of
// these, and the CKPT_HDR_PAGE_DATA records after it carry their contents,
// in order.
struct ckpt_page_run {
  uint64_t addr;
  uint64_t nr_pages;
};
static_assert(sizeof(ckpt_page_run) == 16);

// The pages a task forked from its restored parent keeps from it
// (kTaskInheritsMemory): runs, ascending, each inside one private VMA of
// the parent that the task has too; every other page of such a VMA is
// the task's own (in its page arrays) or absent.
struct ckpt_inherited {
  uint64_t total_pages;  // the runs' pages, summed
  uint64_t total_runs;   // ckpt_page_run entries that follow
};
static_assert(sizeof(ckpt_inherited) == 16);

struct ckpt_sigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};
static_assert(sizeof(ckpt_sigaction) == 32);

inline constexpr uint32_t kNrSignals = 64;
struct ckpt_sighand {
  ckpt_sigaction action[kNrSignals];  // action[i] is signal i+1
};
static_assert(sizeof(ckpt_sighand) == 2048);

// struct user_regs_struct of x86_64, in the kernel's order.
inline constexpr uint32_t kNrUserRegs = 27;

enum ThreadFlags : uint32_t {
  kThreadRestart = 1u << 0,  // a RESTART record follows the SIGINFO records
  kThreadSeccomp = 1u << 1,  // then SECCOMP and its SECCOMP_FILTER records
  kThreadCreds = 1u << 2,    // then CREDS: the thread's own, not its process's
};

// A thread's seccomp filters (filter mode; strict mode is refused at
// dump), oldest first, each installed again in that order.
struct ckpt_seccomp {
  uint32_t mode;        // SECCOMP_MODE_FILTER 2
  uint32_t nr_filters;  // SECCOMP_FILTER records that follow
};
static_assert(sizeof(ckpt_seccomp) == 8);
inline constexpr uint32_t kMaxSeccompFilters = 512;
inline constexpr uint32_t kMaxSeccompInsns = 4096;  // BPF_MAXINSNS

struct ckpt_seccomp_filter {
  uint32_t flags;     // SECCOMP_FILTER_FLAG_LOG (2), as the kernel reports it
  uint32_t nr_insns;  // struct sock_filter (8 bytes each) that follow
};
static_assert(sizeof(ckpt_seccomp_filter) == 8);

// A thread: THREAD, XSTATE, nr_pending SIGINFO records (its own signal
// queue, oldest first), then RESTART if flags say so.
struct ckpt_thread {
  uint32_t tid_ref;
  uint32_t flags;  // ThreadFlags
  uint64_t regs[kNrUserRegs];
  uint64_t sigmask;
  uint64_t altstack_sp;
  uint64_t altstack_size;
  uint32_t altstack_flags;
  uint32_t rseq_sig;
  uint64_t rseq_ptr;
  uint32_t rseq_len;  // 0: no rseq registration
  uint32_t rseq_flags;
  uint64_t clear_child_tid;
  uint64_t robust_list;
  uint64_t robust_list_len;
  uint32_t nr_pending;  // SIGINFO records after XSTATE
  uint32_t reserved;
};
static_assert(sizeof(ckpt_thread) == 304);

// A syscall the freeze interrupted that the kernel would resume through a
// restart block (it returned -ERESTART_RESTARTBLOCK): nanosleep,
// clock_nanosleep, poll, futex waits with a timeout.
enum RestartKind : uint32_t {
  kRestartTimeLeft = 1,  // resume with remaining_ns, counted from the restore's start
  kRestartSameArgs = 2,  // resume with the same arguments (an absolute deadline)
  kRestartEintr = 3,     // the time left could not be known: the call fails with EINTR
};

struct ckpt_restart {
  uint32_t kind;  // RestartKind
  uint32_t reserved;
  int64_t remaining_ns;  // kRestartTimeLeft: the time left at the checkpoint's start
  char how[16];          // "time-left", "same-args" or "eintr", for readers of `ckpt show`
};
static_assert(sizeof(ckpt_restart) == 32);

// A queued signal, as PTRACE_PEEKSIGINFO shows it (the kernel's 128-byte
// siginfo).
struct ckpt_siginfo {
  uint8_t info[128];
};
static_assert(sizeof(ckpt_siginfo) == 128);
inline constexpr uint32_t kMaxPendingSignals = 65536;

struct ckpt_itimer {
  int64_t interval_ns;
  int64_t value_ns;  // time left at the checkpoint's start; 0: disarmed
};
static_assert(sizeof(ckpt_itimer) == 16);

// After SIGHAND: the process's interval timers (ITIMER_REAL, _VIRTUAL,
// _PROF), then nr_pending SIGINFO records (the process-wide signal queue)
// and nr_timers POSIX_TIMER records.
struct ckpt_signals {
  ckpt_itimer itimer[3];
  uint32_t nr_pending;
  uint32_t nr_timers;
};
static_assert(sizeof(ckpt_signals) == 56);
inline constexpr uint32_t kMaxPosixTimers = 65536;

struct ckpt_posix_timer {
  int32_t id;
  int32_t clock;   // clockid_t
  int32_t notify;  // SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD_ID
  int32_t signo;
  int32_t tid_ref;  // SIGEV_THREAD_ID: the thread's pid objref
  uint32_t reserved;
  uint64_t value;  // sigev_value
  int64_t interval_ns;
  int64_t value_ns;  // time left at the checkpoint's start; 0: disarmed
  int32_t overrun;
  uint32_t reserved2;
};
static_assert(sizeof(ckpt_posix_timer) == 56);

// ---------------------------------------------------------------- sched

// CPUs an affinity mask names at most (bits of cpus[]).
inline constexpr uint32_t kMaxCpuWords = 128;  // 8192 CPUs

struct ckpt_sched {
  int32_t oom_score_adj;  // -1000..1000
  uint32_t nr_threads;    // SCHED_THREAD records that follow
};
static_assert(sizeof(ckpt_sched) == 8);

// struct sched_attr of one thread, and its CPU affinity.
struct ckpt_sched_thread {
  uint32_t tid_ref;      // pid objref of the thread
  uint32_t policy;       // SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6
  uint64_t flags;        // SCHED_FLAG_RESET_ON_FORK (1) and the like
  int32_t nice;          // -20..19 (OTHER, BATCH)
  uint32_t priority;     // 1..99 (FIFO, RR)
  uint64_t runtime_ns, deadline_ns, period_ns;  // DEADLINE
  uint32_t nr_cpu_words;  // u64 words of the affinity mask that follow
  uint32_t reserved;
};
static_assert(sizeof(ckpt_sched_thread) == 56);

inline constexpr uint64_t kMaxXstateLen = 64 * 1024;

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_FORMAT_H_
