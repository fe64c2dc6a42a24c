/* test_rank_features.c: placeholder, filled below. */
#include <check.h>
int main(void) { return 0; }
