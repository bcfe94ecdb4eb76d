/* The near-limit for `halfopen sockets -p -i --jsonl`: the same work in plain C.
 *
 * One /proc/PID/fd readlink pass (socket inode -> pid, fd, comm), then one
 * NETLINK_SOCK_DIAG dump per family (AF_INET, AF_INET6) asking for
 * INET_DIAG_INFO and INET_DIAG_SKMEMINFO, and one JSON line per socket with
 * the same keys halfopen writes. No filters, no namespaces: run it inside
 * the namespace to measure (ip netns exec NS bench/cref).
 *
 * Layouts: include/uapi/linux/inet_diag.h (inet_diag_req_v2, inet_diag_msg),
 * include/uapi/linux/tcp.h (struct tcp_info), sock_diag.h (SK_MEMINFO_*).
 * Built by bench/scale.py: cc -O2 -o cref cref.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- owners: open-addressing table inode -> (pid, fd, comm index) ---- */
struct holder { uint64_t inode; int pid, fd, comm; };
static struct holder *table;
static size_t table_cap, table_len;
static char (*comms)[32];
static size_t comms_len, comms_cap;

static size_t slot(uint64_t inode) { return (inode * 0x9E3779B97F4A7C15ull) & (table_cap - 1); }

static void table_put(uint64_t inode, int pid, int fd, int comm);

static void table_grow(void) {
    struct holder *old = table;
    size_t old_cap = table_cap;
    table_cap = table_cap ? table_cap * 2 : 1 << 16;
    table = calloc(table_cap, sizeof *table);
    if (!table) { perror("calloc"); exit(1); }
    table_len = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].inode) table_put(old[i].inode, old[i].pid, old[i].fd, old[i].comm);
    free(old);
}

static void table_put(uint64_t inode, int pid, int fd, int comm) {
    if ((table_len + 1) * 2 > table_cap) table_grow();
    size_t i = slot(inode);
    while (table[i].inode) i = (i + 1) & (table_cap - 1);
    table[i] = (struct holder){inode, pid, fd, comm};
    table_len++;
}

static void scan_owners(void) {
    DIR *proc = opendir("/proc");
    if (!proc) { perror("/proc"); exit(1); }
    struct dirent *p;
    char path[64], link[64];
    while ((p = readdir(proc))) {
        if (p->d_name[0] < '0' || p->d_name[0] > '9') continue;
        int pid = atoi(p->d_name);
        snprintf(path, sizeof path, "/proc/%d/fd", pid);
        int dfd = open(path, O_RDONLY | O_DIRECTORY);
        if (dfd < 0) continue;
        DIR *fds = fdopendir(dfd);
        if (!fds) { close(dfd); continue; }
        int comm = -1;
        struct dirent *f;
        while ((f = readdir(fds))) {
            if (f->d_name[0] == '.') continue;
            ssize_t n = readlinkat(dfd, f->d_name, link, sizeof link - 1);
            if (n < 9 || memcmp(link, "socket:[", 8)) continue;
            link[n] = 0;
            if (comm < 0) { /* comm read once per process that holds a socket */
                if (comms_len == comms_cap) {
                    comms_cap = comms_cap ? comms_cap * 2 : 1024;
                    comms = realloc(comms, comms_cap * sizeof *comms);
                }
                snprintf(path, sizeof path, "/proc/%d/comm", pid);
                int cfd = open(path, O_RDONLY);
                ssize_t m = cfd >= 0 ? read(cfd, comms[comms_len], 31) : 0;
                if (cfd >= 0) close(cfd);
                if (m < 0) m = 0;
                comms[comms_len][m] = 0;
                if (m && comms[comms_len][m - 1] == '\n') comms[comms_len][m - 1] = 0;
                comm = (int)comms_len++;
            }
            table_put(strtoull(link + 8, NULL, 10), pid, atoi(f->d_name), comm);
        }
        closedir(fds);
    }
    closedir(proc);
}

/* ---- JSON: hand-formatted into one buffer (printf was half the run) ---- */
static char out[1 << 16];
static size_t out_len;

static void flush_out(void) { fwrite(out, 1, out_len, stdout); out_len = 0; }
static inline void put(const char *s, size_t n) {
    if (out_len + n > sizeof out) flush_out();
    memcpy(out + out_len, s, n);
    out_len += n;
}
#define PUTS(lit) put(lit, sizeof lit - 1)
static inline void put_str(const char *s) { put(s, strlen(s)); }
static inline void put_u64(uint64_t v) {
    char tmp[24];
    int i = sizeof tmp;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(tmp + i, sizeof tmp - i);
}

static void put_json_string(const char *s) {
    char esc[8];
    PUTS("\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; put(esc, 2); }
        else if (c < 0x20 || c >= 0x7f) { snprintf(esc, sizeof esc, "\\u%04x", c); put(esc, 6); }
        else put((const char *)&c, 1);
    }
    PUTS("\"");
}

static const char *STATES[] = {"unknown", "established", "syn_sent", "syn_recv", "fin_wait1",
                               "fin_wait2", "time_wait", "close", "close_wait", "last_ack",
                               "listen", "closing", "new_syn_recv"};
static const char *TIMERS[] = {"off", "on", "keepalive", "timewait", "persist"};

/* struct tcp_info in header order: name and size; byte 6 holds both wscales. */
struct field { const char *name; int size; };
static const struct field TCP_INFO[] = {
    {"state", 1}, {"ca_state", 1}, {"retransmits", 1}, {"probes", 1}, {"backoff", 1},
    {"options", 1}, {"wscale", 1}, {"", 1} /* pad: delivery_rate_app_limited bits */,
    {"rto", 4}, {"ato", 4}, {"snd_mss", 4}, {"rcv_mss", 4}, {"unacked", 4}, {"sacked", 4},
    {"lost", 4}, {"retrans", 4}, {"fackets", 4}, {"last_data_sent", 4}, {"last_ack_sent", 4},
    {"last_data_recv", 4}, {"last_ack_recv", 4}, {"pmtu", 4}, {"rcv_ssthresh", 4},
    {"rtt", 4}, {"rttvar", 4}, {"snd_ssthresh", 4}, {"snd_cwnd", 4}, {"advmss", 4},
    {"reordering", 4}, {"rcv_rtt", 4}, {"rcv_space", 4}, {"total_retrans", 4},
    {"pacing_rate", 8}, {"max_pacing_rate", 8}, {"bytes_acked", 8}, {"bytes_received", 8},
    {"segs_out", 4}, {"segs_in", 4}, {"notsent_bytes", 4}, {"min_rtt", 4},
    {"data_segs_in", 4}, {"data_segs_out", 4}, {"delivery_rate", 8}, {"busy_time", 8},
    {"rwnd_limited", 8}, {"sndbuf_limited", 8}, {"delivered", 4}, {"delivered_ce", 4},
    {"bytes_sent", 8}, {"bytes_retrans", 8}, {"dsack_dups", 4}, {"reord_seen", 4},
    {"rcv_ooopack", 4}, {"snd_wnd", 4}, {"rcv_wnd", 4}, {"rehash", 4}, {"total_rto", 2},
    {"total_rto_recoveries", 2}, {"total_rto_time", 4},
};
static const char *MEMINFO[] = {"rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc",
                                "wmem_queued", "optmem", "backlog", "drops"};

static void put_tcp_info(const unsigned char *p, int len) {
    int off = 0;
    PUTS(",\"tcp_info\":{");
    for (size_t i = 0; i < sizeof TCP_INFO / sizeof *TCP_INFO; i++) {
        const struct field *f = &TCP_INFO[i];
        if (off + f->size > len) break;
        uint64_t v = 0;
        memcpy(&v, p + off, f->size); /* little-endian host */
        off += f->size;
        if (!f->name[0]) continue;
        if (i == 6) { /* wscale: __u8 snd_wscale : 4, rcv_wscale : 4 */
            PUTS(",\"snd_wscale\":");
            put_u64(v & 15);
            PUTS(",\"rcv_wscale\":");
            put_u64(v >> 4);
            continue;
        }
        if (i) PUTS(",");
        PUTS("\"");
        put_str(f->name);
        PUTS("\":");
        put_u64(v);
    }
    PUTS("}");
}

static void put_socket(struct inet_diag_msg *m, int len) {
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    int af = m->idiag_family;
    inet_ntop(af, m->id.idiag_src, src, sizeof src);
    inet_ntop(af, m->id.idiag_dst, dst, sizeof dst);
    unsigned st = m->idiag_state;
    PUTS("{\"netns\":\"host\",\"family\":");
    put_u64(af == AF_INET ? 4 : 6);
    PUTS(",\"state\":\"");
    put_str(st < 13 ? STATES[st] : "unknown");
    PUTS("\",\"recv_q\":");
    put_u64(m->idiag_rqueue);
    PUTS(",\"send_q\":");
    put_u64(m->idiag_wqueue);
    PUTS(",\"local_addr\":\"");
    put_str(src);
    PUTS("\",\"local_port\":");
    put_u64(ntohs(m->id.idiag_sport));
    PUTS(",\"peer_addr\":\"");
    put_str(dst);
    PUTS("\",\"peer_port\":");
    put_u64(ntohs(m->id.idiag_dport));
    PUTS(",\"timer\":\"");
    put_str(m->idiag_timer < 5 ? TIMERS[m->idiag_timer] : "unknown");
    PUTS("\",\"timer_expires_ms\":");
    put_u64(m->idiag_expires);
    PUTS(",\"timer_retrans\":");
    put_u64(m->idiag_retrans);
    PUTS(",\"uid\":");
    put_u64(m->idiag_uid);
    PUTS(",\"inode\":");
    put_u64(m->idiag_inode);
    PUTS(",\"cookie\":");
    put_u64((uint64_t)m->id.idiag_cookie[1] << 32 | m->id.idiag_cookie[0]);
    struct rtattr *a = (struct rtattr *)(m + 1);
    int rest = len - NLMSG_LENGTH(sizeof *m);
    const unsigned char *info = NULL, *mem = NULL;
    int info_len = 0, mem_len = 0;
    for (; RTA_OK(a, rest); a = RTA_NEXT(a, rest)) {
        if (a->rta_type == INET_DIAG_SHUTDOWN) {
            PUTS(",\"shutdown\":");
            put_u64(*(unsigned char *)RTA_DATA(a));
        } else if (a->rta_type == INET_DIAG_INFO) { info = RTA_DATA(a); info_len = RTA_PAYLOAD(a); }
        else if (a->rta_type == INET_DIAG_SKMEMINFO) { mem = RTA_DATA(a); mem_len = RTA_PAYLOAD(a); }
    }
    if (m->idiag_inode && table_cap) {
        int n = 0;
        for (size_t i = slot(m->idiag_inode); table[i].inode; i = (i + 1) & (table_cap - 1)) {
            if (table[i].inode != m->idiag_inode) continue;
            if (n++) PUTS(","); else PUTS(",\"owners\":[");
            PUTS("{\"pid\":");
            put_u64(table[i].pid);
            PUTS(",\"comm\":");
            put_json_string(comms[table[i].comm]);
            PUTS(",\"fd\":");
            put_u64(table[i].fd);
            PUTS("}");
        }
        if (n) PUTS("]");
    }
    if (info) put_tcp_info(info, info_len);
    if (mem) {
        PUTS(",\"meminfo\":{");
        for (int i = 0; i < 9 && (i + 1) * 4 <= mem_len; i++) {
            if (i) PUTS(",");
            PUTS("\"");
            put_str(MEMINFO[i]);
            PUTS("\":");
            put_u64(((const uint32_t *)mem)[i]);
        }
        PUTS("}");
    }
    PUTS("}\n");
}

static long dump(int family) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) { perror("socket"); exit(1); }
    struct { struct nlmsghdr h; struct inet_diag_req_v2 r; } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .r = {.sdiag_family = family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u,
              .idiag_ext = 1 << (INET_DIAG_INFO - 1) | 1 << (INET_DIAG_SKMEMINFO - 1)},
    };
    req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (send(fd, &req, sizeof req, 0) < 0) { perror("send"); exit(1); }
    static char buf[1 << 16] __attribute__((aligned(8)));
    long count = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) { perror("recv"); exit(1); }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) { close(fd); return count; }
            if (h->nlmsg_type == NLMSG_ERROR) {
                int err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
                if (err == 0 || (family == AF_INET6 && err == EAFNOSUPPORT)) { close(fd); return count; }
                fprintf(stderr, "sock_diag: %s\n", strerror(err));
                exit(1);
            }
            put_socket(NLMSG_DATA(h), h->nlmsg_len);
            count++;
        }
    }
}

int main(void) {
    scan_owners();
    long n = dump(AF_INET) + dump(AF_INET6);
    flush_out();
    fflush(stdout);
    fprintf(stderr, "%ld sockets, %zu socket fds\n", n, table_len);
    return 0;
}
