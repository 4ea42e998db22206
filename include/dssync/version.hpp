#pragma once
/// \file
/// dssync's one version number. CMake reads it from here.
#define DSSYNC_VERSION_MAJOR 0
#define DSSYNC_VERSION_MINOR 1
#define DSSYNC_VERSION_PATCH 0
#define DSSYNC_VERSION_STRING "0.1.0"
