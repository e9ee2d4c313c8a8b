/*
 * main.c - the `mke` binary: dispatches to a subcommand of the table below.
 * Exit codes: 0 success, 1 the work failed, 2 bad usage.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

const struct cmd mke_commands[] = {
	{"experiment", cmd_experiment, "run a config's variants in one process and print the table",
	 "usage: mke experiment CONFIG [--format table|csv] [-o FILE] [--threads N] [--quiet]\n"
	 "\n"
	 "Trains the teacher, pseudo-labels the unlabeled set and trains every student\n"
	 "variant over the config's grid of regularizer settings and seeds, all in this\n"
	 "process (no Redis, no MPI). Prints mean ± std of the test accuracy per cell,\n"
	 "the teacher's accuracy over the seeds, the pseudo-label accuracy and each\n"
	 "student's rectification. --format csv writes `setting,variant,mean,std,n`.\n"
	 "--threads N runs each convolutional model's batch on N threads (over the\n"
	 "config's \"threads\", default 1).\n"},
	{"run", cmd_run, "run the whole MKE lifecycle through Redis and an MPI worker job",
	 "usage: mke run CONFIG [--ranks N] [--redis URL] [--run-dir DIR] [--db FILE]\n"
	 "                      [--setting NAME] [--max-restarts N] [--quiet | --json]\n"
	 "                      [--notify URL] [--launcher mpirun|srun] [--hostfile FILE]\n"
	 "\n"
	 "Creates a run and drives it: teacher -> shard -> label -> student -> eval -> done.\n"
	 "Without --redis a private redis-server is started on a unix socket in the run\n"
	 "directory and stopped at the end. The workers are 'mpirun -np N mke-worker'\n"
	 "(N defaults to the number of cores), restarted from their checkpoints when the\n"
	 "job dies. The Redis password comes from MKE_REDIS_PASSWORD or the config, never\n"
	 "from the command line. The run directory defaults to $MKE_RUNS/<run id> (MKE_RUNS\n"
	 "defaults to ./runs); the database to <run dir>/mke.db ($MKE_DB or --db to share one).\n"
	 "--setting picks the grid setting (regularizer) to run; default the first.\n"
	 "--launcher srun starts the workers as 'srun --ntasks N --mpi=pmix mke-worker'\n"
	 "inside a Slurm allocation (see 'mke submit'); --hostfile FILE is passed to mpirun.\n"
	 "Progress goes to stderr: a live line (phase, bar, shards or model and epoch,\n"
	 "ETA) on a terminal, a plain line every MKE_PROGRESS_INTERVAL seconds (default\n"
	 "10) otherwise; a summary ends stdout. --quiet prints only errors, warnings and\n"
	 "the summary. --json prints one JSON object per event line on stdout (run, job,\n"
	 "phase, progress, end; see docs/cli.md). --notify URL (or MKE_NOTIFY_URL) POSTs\n"
	 "the summary as JSON when the run ends (10 s timeout, 3 attempts); a webhook\n"
	 "that fails is a warning, never a failed run.\n"
	 "Exit status: 0 done, 1 failed, 2 usage, 3 cancelled.\n"},
	{"submit", cmd_submit, "write a batch script for 'mke run' and submit it to Slurm or mpirun",
	 "usage: mke submit CONFIG --scheduler slurm|mpirun --nodes N --ntasks-per-node R\n"
	 "                  [--time T] [--partition P] [--account A] [--module M ...]\n"
	 "                  [--launcher srun|mpirun]\n"
	 "                  [--hostfile F] [--run-dir DIR] [--db FILE] [--redis URL]\n"
	 "                  [-o SCRIPT] [--dry-run]\n"
	 "\n"
	 "Writes a script that runs 'mke run CONFIG --ranks N*R' and submits it.\n"
	 "slurm: an sbatch script from deploy/slurm/mke.sbatch.in (#SBATCH --nodes,\n"
	 "--ntasks-per-node, --time, --partition, --account; 'module load M' lines); the\n"
	 "coordinator runs on the first node and starts the workers with srun (or with\n"
	 "Open MPI's mpirun inside the allocation: --launcher mpirun). It is\n"
	 "given to 'sbatch --parsable' and the job id is printed; the run records it\n"
	 "(SLURM_JOB_ID) and 'mke status' shows it. mpirun: a shell script whose 'mke run'\n"
	 "passes --hostfile F to mpirun (MKE_MPIRUN_ARGS are added to the mpirun line),\n"
	 "started in the background with its output in SCRIPT.log; the pid is printed.\n"
	 "The script goes to -o SCRIPT, else DIR/mke.sbatch (or DIR/mke-run.sh), where DIR\n"
	 "is --run-dir or $MKE_RUNS/submit-<time>. --dry-run writes and prints it only.\n"
	 "--hostfile is for mpirun only; --time, --partition, --account and --launcher\n"
	 "for slurm only.\n"
	 "With --nodes > 1 the workers need a Redis they can reach: --redis redis://HOST:PORT.\n"},
	{"resume", cmd_resume, "continue a run whose coordinator or worker job died",
	 "usage: mke resume RUN [--ranks N] [--redis URL] [--db FILE] [--quiet | --json]\n"
	 "                      [--notify URL]\n"
	 "\n"
	 "Drives RUN on from what its database records: finished shards are not redone,\n"
	 "the teacher and students continue from their last checkpoints. Progress,\n"
	 "--quiet, --json and --notify as for 'mke run'.\n"},
	{"runs", cmd_runs, "list the runs this machine can see, newest first",
	 "usage: mke runs [--db FILE] [--json]\n"
	 "\n"
	 "Lists every run in $MKE_DB and in each $MKE_RUNS/RUN/mke.db (MKE_RUNS defaults\n"
	 "to ./runs), or only those in --db FILE: id, name, status, phase, when it was\n"
	 "created, how long it ran, and for a finished run the best pseudo-label student's\n"
	 "test accuracy against the teacher's. --json prints an array of objects.\n"},
	{"status", cmd_status, "show a run's phase, shards, ranks, throughput and results",
	 "usage: mke status [RUN] [--db FILE] [--json|--prometheus] [--watch [SECONDS]]\n"
	 "\n"
	 "Shows RUN (default: the newest run) from its database: status and phase, the\n"
	 "phases with their times, shards by state, live worker ranks, label throughput\n"
	 "and ETA, the latest metrics, and the variants table (teacher accuracy, each\n"
	 "student's mean ± std over seeds of test accuracy and rectification, and its\n"
	 "gain over the teacher in points). RUN may be a unique prefix of a run id.\n"
	 "The database is --db FILE, else $MKE_DB, else $MKE_RUNS/RUN/mke.db.\n"
	 "--json prints one JSON object. --watch redraws every SECONDS (default 2) until\n"
	 "the run is done, failed or cancelled (one JSON object per line with --json).\n"
	 "--prometheus prints gauges in the Prometheus text format (mke_run_info,\n"
	 "mke_shards, mke_samples_per_second, mke_train_loss, mke_test_accuracy), e.g. for\n"
	 "node_exporter's textfile collector.\n"},
	{"export", cmd_export, "write a run's metrics, shards, params, events or runs as CSV or JSON",
	 "usage: mke export RUN [--metrics|--shards|--params|--events|--runs]\n"
	 "                      [--format csv|json] [-o FILE] [--db FILE]\n"
	 "\n"
	 "Writes one table of RUN (default --metrics) to stdout, or atomically to FILE\n"
	 "(mode 0640). CSV is RFC 4180 (header row, CRLF, quoted cells); a text cell that\n"
	 "starts with = + - @ TAB or CR gets a leading ' so that spreadsheets do not run\n"
	 "it as a formula. JSON is an array of objects. --runs exports the runs table:\n"
	 "RUN's row, or with no RUN every run 'mke runs' lists. Empty cells and nulls are\n"
	 "NULL in the database (a NaN metric value is empty/null).\n"},
	{"report", cmd_report, "write a self-contained HTML report of a run (tables and SVG charts)",
	 "usage: mke report [RUN] -o FILE [--db FILE]\n"
	 "\n"
	 "Writes one HTML page about RUN (default: the newest run) atomically to FILE\n"
	 "(mode 0640): the run header and phases, the variants table (test accuracy\n"
	 "mean ± std over seeds, gain over the teacher, pseudo-label accuracy and\n"
	 "rectification, as 'mke status' computes them), learning curves (train loss\n"
	 "against step per variant), pseudo-label accuracy and rectification bars (or\n"
	 "per-class metrics when recorded) and the shards' lease-to-done times. The page\n"
	 "has no scripts and loads nothing: CSS inline, charts as inline SVG.\n"},
	{"cancel", cmd_cancel, "ask a running run to stop",
	 "usage: mke cancel RUN [--db FILE] [--reason TEXT] [--wait [SECONDS]]\n"
	 "\n"
	 "Sets the run's cancel key in its Redis (the URL recorded in the run's params;\n"
	 "the password from MKE_REDIS_PASSWORD or the run's config). The coordinator\n"
	 "notices, stops the workers, releases the leases and records status cancelled.\n"
	 "--wait waits up to SECONDS (default 60) for that record. A run that already\n"
	 "ended is left alone (exit 0). Exit 1 when Redis cannot be reached: the\n"
	 "coordinator is then probably dead (see 'mke resume').\n"},
	{"split", cmd_split, "cut a manifest into the labeled, unlabeled and test sets of a run",
	 "usage: mke split MANIFEST [--labeled F] [--test F] [--seed S]\n"
	 "\n"
	 "Writes M-labeled.csv, M-unlabeled.csv and M-test.csv next to MANIFEST (M.csv),\n"
	 "so their relative paths keep resolving. Test rows: split 'test', 'val' or 'eval';\n"
	 "without any, a fraction F (--test, default 0.2) of all rows. Labeled: a fraction\n"
	 "F (--labeled, default 0.1) of each class of the remaining rows, at least one per\n"
	 "class; the rest is unlabeled (its labels are kept for diagnostics only). Rows\n"
	 "are picked by a hash of (seed, id): the same seed gives the same split.\n"},
	{"shard", cmd_shard, "validate a manifest and cut it into shards for a run's queue",
	 "usage: mke shard MANIFEST --run RUN [--shard-size K] [--config CONFIG] [--db FILE]\n"
	 "                 [--redis URL] [--quiet]\n"
	 "\n"
	 "Checks every row of MANIFEST (bad rows are reported as file:line: reason,\n"
	 "counted and skipped; with --config the modality cells are decoded too),\n"
	 "records shards of K rows (default: the config's pipeline.shard_size, else 64)\n"
	 "in the run's database (created if new) and pushes the unfinished ones to the\n"
	 "run's Redis queue (--redis, else the URL the run recorded; none: record only).\n"
	 "Safe to repeat: known shards are left alone and done ones are not pushed.\n"
	 "Fetching URL cells, recording and pushing show a progress meter on a terminal\n"
	 "(plain lines every MKE_PROGRESS_INTERVAL seconds otherwise); --quiet keeps\n"
	 "only errors, warnings and the summary line.\n"},
	{"import", cmd_import, "turn a dataset's native files into a manifest",
	 "usage: mke import vggsound vggsound.csv --media DIR -o MANIFEST\n"
	 "       mke import audioset SEGMENTS.csv --labels class_labels_indices.csv\n"
	 "                           --media DIR [--split NAME] -o MANIFEST\n"
	 "       mke import nyuv2 nyu_depth_v2_labeled.mat [--split splits.mat]\n"
	 "                        --class-map classMapping40.mat | --classes 894 -o DIR\n"
	 "       mke import ravdess DIR -o MANIFEST\n"
	 "\n"
	 "Writes a manifest (id,label,split,<modality paths>) and MANIFEST.classes.txt\n"
	 "(line k names class k). Clips are <id>_<start:06d>.wav in --media (a frame\n"
	 "folder of the same name becomes a frames column). Rows whose media are\n"
	 "missing, or that are malformed, are reported as file:line and skipped.\n"
	 "nyuv2 writes DIR/{rgb,depth,label}/NNNN.png and DIR/manifest.csv: the labels\n"
	 "mapped to the 40 classes by --class-map (the official classMapping40.mat,\n"
	 "MATLAB v4/v5/v7.3, or a nyu_id,class40[,name] CSV), or the raw NYU ids with\n"
	 "--classes 894; splits.mat (trainNdxs/testNdxs, any MATLAB version) gives the\n"
	 "795/654 split. See docs/importers.md.\n"},
	{"gen", cmd_gen, "write a small synthetic dataset in a real dataset's native format",
	 "usage: mke gen twomoon|vggsound|vggsound-mp4|nyuv2|ravdess -o DIR [--n N] [--seed S]\n"
	 "\n"
	 "Learnable data in the MKE setting (modality a faint for 35% of the samples,\n"
	 "modality b clear), in the files 'mke import' reads: vggsound.csv + WAVs and\n"
	 "frame folders or MP4 clips (+ AudioSet CSVs), the NYU labeled .mat (HDF5) +\n"
	 "splits.mat and classMapping40.mat (MATLAB v5), RAVDESS-named WAVs and face\n"
	 "PNGs, or TwoMoon manifests. Same seed, same bytes. See docs/importers.md.\n"},
	{"help", cmd_help, "show help for mke or one command", "usage: mke help [COMMAND]\n"},
	{NULL, NULL, NULL, NULL},
};

const struct cmd *cmd_find(const char *name)
{
	for (const struct cmd *c = mke_commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int cmd_usage(const char *name, int to_stderr)
{
	const struct cmd *c = cmd_find(name);
	FILE *out = to_stderr ? stderr : stdout;
	if (c)
		fputs(c->usage, out);
	return 0;
}

int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return 1;
	return 0;
}

int cmd_help(int argc, char **argv)
{
	if (argc > 1) {
		if (!cmd_find(argv[1])) {
			fprintf(stderr, "error: unknown command '%s'; see 'mke help'\n", argv[1]);
			return 2;
		}
		return cmd_usage(argv[1], 0);
	}
	printf("usage: mke COMMAND [ARGS]\n\n"
	       "Multimodal Knowledge Expansion at cluster scale: a teacher trained on one\n"
	       "modality pseudo-labels unlabeled multimodal data; a multimodal student\n"
	       "trained on those labels beats its teacher.\n\ncommands:\n");
	for (const struct cmd *c = mke_commands; c->name; c++)
		printf("  %-12s %s\n", c->name, c->help);
	printf("\nSee 'mke help COMMAND' or 'mke COMMAND --help'.\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return cmd_help(1, argv), 2;
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(1, argv);
	if (strcmp(argv[1], "--version") == 0) {
		printf("mke 0.1\n");
		return 0;
	}
	const struct cmd *c = cmd_find(argv[1]);
	if (!c) {
		fprintf(stderr, "error: unknown command '%s'; see 'mke help'\n", argv[1]);
		return 2;
	}
	if (c->fn != cmd_help && wants_help(argc - 1, argv + 1))
		return cmd_usage(c->name, 0);
	return c->fn(argc - 1, argv + 1);
}
