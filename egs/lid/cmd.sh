# How jobs run: on this machine (utils/run.py) or on a Slurm cluster (utils/slurm.py).
# Uncomment the Slurm lines and set the partition to run the parallel steps there.
export train_cmd="utils/run.py --max-jobs-run ${NASR_MAX_JOBS:-2}"
export cuda_cmd="utils/run.py --max-jobs-run 1"
# export train_cmd="utils/slurm.py --partition cpu --time 4:00:00 --mem 8G"
# export cuda_cmd="utils/slurm.py --partition gpu --gpus 1 --time 24:00:00 --mem 32G"
