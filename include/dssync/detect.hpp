#pragma once
/// \file
/// Opt-in umbrella: the core (dssync/dssync.hpp) plus the active bandwidth probe (`topology::probe`):
/// pairwise bandwidth and latency, rack clustering and contention detection on any transport; and the
/// passive detector (`detect::contention_detector`), which names contended NICs and uplinks from the
/// collectives' own timings.

#include "dssync/dssync.hpp"

#include "dssync/detect/contention.hpp"
#include "dssync/topology/probe.hpp"
