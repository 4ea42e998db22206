#pragma once
/// \file
/// The core umbrella: the plan, the verifier, the executor, the in-process transport, the policies and
/// their registry, the reduction ops and the topology models; `dssync::synchronize`.
///
/// The rest is opt-in, so a user pays only for what they include:
///  - `dssync/sim.hpp`: the flow simulator, the simulated transport, scenarios and timelines;
///  - `dssync/fault.hpp`: recovery from failed servers (`fault::synchronize_resilient`);
///  - `dssync/detect.hpp`: the bandwidth probe and the passive contention detector;
///  - `dssync/algorithms/consensus.hpp`: consensus analysis of groupings (links `dssync::eigen`);
///  - `dssync/mpi.hpp`: the MPI transport (links `dssync::mpi`).

#include "dssync/version.hpp"

#include "dssync/core/chunking.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/network_state.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/reduction_op.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/core/verifier.hpp"

#include "dssync/ops/ops.hpp"

#include "dssync/topology/bcube.hpp"
#include "dssync/topology/dgx1.hpp"
#include "dssync/topology/fat_tree.hpp"
#include "dssync/topology/full_mesh.hpp"
#include "dssync/topology/graph.hpp"
#include "dssync/topology/network.hpp"
#include "dssync/topology/racks.hpp"
#include "dssync/topology/ring.hpp"
#include "dssync/topology/spec.hpp"
#include "dssync/topology/star.hpp"
// dssync/topology/graphviz.hpp (read_dot) is not included: it links Boost.Graph's library (Boost::graph).

#include "dssync/algorithms/binomial_tree.hpp"
#include "dssync/algorithms/blocks.hpp"
#include "dssync/algorithms/chain.hpp"
#include "dssync/algorithms/direct.hpp"
#include "dssync/algorithms/ds_sync.hpp"
#include "dssync/algorithms/grouping.hpp"
#include "dssync/algorithms/registry.hpp"
#include "dssync/algorithms/ring.hpp"

#include "dssync/codecs/identity.hpp"

#include "dssync/transport/agreement.hpp"
#include "dssync/transport/executor.hpp"
#include "dssync/transport/inproc.hpp"

#include "dssync/communicator.hpp"
#include "dssync/synchronize.hpp"
