/* main.c — stagedoor entry point (command table filled in by cli/). */
#include <stdio.h>
int main(void)
{
    puts("stagedoor");
    return 0;
}
