/* Run a command; write its peak RSS (wait4's ru_maxrss, KiB) and its CPU
 * time (user + system, s) to stderr as "maxrss_kib N cpu_s S" and exit with
 * its status. CPU time stays meaningful on a shared, loaded machine. A small launcher of its own so the
 * figure is the command's: a child forked (or vforked) from the Python
 * benchmark starts with the parent's RSS as its high-water mark, which exec
 * keeps (fs/exec.c exec_mmap, setmax_mm_hiwater_rss). SIGTERM and SIGINT are
 * passed on to the command. Built by bench/scale.py.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void pass_on(int sig) { if (child > 0) kill(child, sig); }

int main(int argc, char **argv) {
    if (argc < 2) { fputs("usage: maxrss COMMAND [ARG]...\n", stderr); return 64; }
    child = fork();
    if (child < 0) { perror("fork"); return 70; }
    if (child == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    struct sigaction sa = {.sa_handler = pass_on};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int status;
    struct rusage ru;
    while (wait4(child, &status, 0, &ru) < 0) {}
    fprintf(stderr, "maxrss_kib %ld cpu_s %.3f\n", ru.ru_maxrss,
            ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
            + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
