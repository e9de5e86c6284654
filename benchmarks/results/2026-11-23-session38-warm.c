/* warm: sleep 20 us at a time for the given number of seconds (what Go's sysmon does when busy) */
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
	long us = argc > 2 ? atol(argv[2]) : 20;
	struct timespec d = {0, us * 1000}, now, end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += argc > 1 ? atol(argv[1]) : 60;
	for (;;) {
		nanosleep(&d, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec) return 0;
	}
}
