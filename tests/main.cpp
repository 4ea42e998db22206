// doctest's main for the unit tests; every tests/<folder>/test_*.cpp links into one binary.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
