#pragma once
/// \file
/// Opt-in umbrella: the core (dssync/dssync.hpp) plus fault tolerance: BML's re-plan around failed
/// servers and `fault::synchronize_resilient` (revoke, agree, shrink, re-plan, retry).

#include "dssync/dssync.hpp"

#include "dssync/fault/recovery.hpp"
