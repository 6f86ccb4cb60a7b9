"""Run directories, the step cache and safe files (house rule 7): `run` (the run directory, names, log),
`step` (artifacts keyed by what produced them), `content` (file, output and code digests), `store` (atomic writes,
digest, JSONL, locks, writes kept inside the run folder), `progress`."""
from .content import code_digest, file_sha256, tree_files
from .parallel import threads
from .progress import Progress, in_notebook, progress, since_import
from .run import (CheckoutError, Run, check_name, check_unique, checkout_of, fingerprint, library_checkout_warning, log,
                  notebooks_dir, params_dir, repo_root, slug)
from .step import Step, set_verbose, steps_computed
from .store import (BadFileError, UnsafePathError, append_jsonl, atomic_write, check_inside, digest, locked,
                    read_json, read_jsonl, text_digest, update_json, write_json, write_parquet, write_text)

__all__ = ["CheckoutError", "Run", "Step", "params_dir", "notebooks_dir", "checkout_of", "library_checkout_warning",
           "Progress", "progress", "since_import", "in_notebook", "check_name", "check_unique", "fingerprint", "log",
           "repo_root",
           "slug", "set_verbose", "steps_computed", "append_jsonl", "atomic_write", "digest", "locked", "read_json",
           "read_jsonl", "text_digest", "threads", "update_json", "write_json", "write_parquet", "write_text",
           "BadFileError", "UnsafePathError",
           "check_inside", "code_digest", "file_sha256", "tree_files"]
