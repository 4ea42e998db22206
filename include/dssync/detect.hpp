#pragma once
/// \file
/// Opt-in umbrella: the core (dssync/dssync.hpp) plus the active bandwidth probe (`topology::probe`):
/// pairwise bandwidth and latency, rack clustering and contention detection on any transport.

#include "dssync/dssync.hpp"

#include "dssync/topology/probe.hpp"
