#!/bin/sh
# usage: mpirun.sh NP PROGRAM [ARGS...]: runs PROGRAM as NP ranks on this machine (oversubscribed: the test
# machines have 2 cores), or reports a ctest skip (exit 77) when mpirun is missing.
# As root (CI, containers) OpenMPI refuses to start without these two variables; they are set here, for the
# tests only, not in the user's way.
np=$1
shift
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: mpirun not found (apt-get install openmpi-bin libopenmpi-dev, or scripts/install-deps.sh)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One OpenMP thread per rank, sleeping when idle: NP ranks share 2 cores with the rest of the suite.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# A mismatched or lost collective ends the job in 60 s rather than at ctest's timeout.
export SELFSUP_DIST_TIMEOUT=${SELFSUP_DIST_TIMEOUT:-60}
exec mpirun -np "$np" --oversubscribe --bind-to none "$@"
