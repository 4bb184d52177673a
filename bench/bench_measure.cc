// bench_measure: runs a command, prints its wall time and peak RSS.
//
//   bench_measure [--repeat N] -- COMMAND [ARGS...]
//
// Output, one line per run and a summary line:
//   run=1 wall_s=1.234 maxrss_kib=5120 status=0
//   median_wall_s=1.234 max_maxrss_kib=5120
// Exit status: 0 if every run exited 0, else 1. Used by bench/*.sh to put
// our commands side by side with the reference ones (openssl dgst, ...).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

int main(int argc, char** argv) {
  int repeat = 1;
  int i = 1;
  for (; i < argc; ++i) {
    if (std::strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--") == 0) {
      ++i;
      break;
    } else {
      break;
    }
  }
  if (i >= argc) {
    std::fprintf(stderr, "usage: bench_measure [--repeat N] -- COMMAND [ARGS...]\n");
    return 64;
  }
  std::vector<double> walls;
  long max_rss = 0;
  bool all_ok = true;
  for (int r = 1; r <= repeat; ++r) {
    auto start = std::chrono::steady_clock::now();
    pid_t pid = fork();
    if (pid < 0) { std::perror("fork"); return 70; }
    if (pid == 0) {
      execvp(argv[i], argv + i);
      std::perror("execvp");
      _exit(127);
    }
    int status = 0;
    struct rusage ru{};
    if (wait4(pid, &status, 0, &ru) < 0) { std::perror("wait4"); return 70; }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) all_ok = false;
    walls.push_back(wall);
    max_rss = std::max(max_rss, ru.ru_maxrss);
    std::printf("run=%d wall_s=%.3f maxrss_kib=%ld status=%d\n", r, wall, ru.ru_maxrss, code);
  }
  std::sort(walls.begin(), walls.end());
  std::printf("median_wall_s=%.3f max_maxrss_kib=%ld\n", walls[walls.size() / 2], max_rss);
  return all_ok ? 0 : 1;
}
