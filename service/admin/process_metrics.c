#include "admin/process_metrics.h"

#include <curl/curl.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <grpc/grpc.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double start_time_s;

void process_metrics_init(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    start_time_s = (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void process_metrics_page(struct evbuffer *out)
{
    struct rusage ru;
    struct rlimit rl;
    long pages_total = 0, pages_rss = 0;
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2)
            pages_total = pages_rss = 0;
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    evbuffer_add_printf(out,
                        "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
                        "# TYPE process_cpu_seconds_total counter\n"
                        "process_cpu_seconds_total %.3f\n"
                        "# HELP process_resident_memory_bytes Resident memory size.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %ld\n"
                        "# HELP process_virtual_memory_bytes Virtual memory size.\n"
                        "# TYPE process_virtual_memory_bytes gauge\n"
                        "process_virtual_memory_bytes %ld\n"
                        "# HELP process_start_time_seconds Start time since the epoch.\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %.3f\n",
                        cpu, pages_rss * page, pages_total * page, start_time_s);
    int fds = open_fds();
    if (fds >= 0)
        evbuffer_add_printf(out,
                            "# HELP process_open_fds Open file descriptors.\n"
                            "# TYPE process_open_fds gauge\n"
                            "process_open_fds %d\n",
                            fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        evbuffer_add_printf(out,
                            "# HELP process_max_fds The open file descriptor limit.\n"
                            "# TYPE process_max_fds gauge\n"
                            "process_max_fds %llu\n",
                            (unsigned long long)rl.rlim_cur);
    /* What an operator asks first when something changed: which build, on
     * which libraries (the image's, or the host's). */
    evbuffer_add_printf(out,
                        "# HELP commsgate_build_info The build and the libraries it runs on.\n"
                        "# TYPE commsgate_build_info gauge\n"
                        "commsgate_build_info{version=\"%s\",grpc=\"%s\",curl=\"%s\","
                        "openssl=\"%s\",libevent=\"%s\",hiredis=\"%d.%d.%d\"} 1\n",
                        COMMSGATE_VERSION, grpc_version_string(),
                        curl_version_info(CURLVERSION_NOW)->version,
                        OpenSSL_version(OPENSSL_VERSION_STRING), event_get_version(),
                        HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
}
