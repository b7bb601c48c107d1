"""Task command for the hello workflow: greets the workflow's arguments."""

import json
import sys

task = json.loads(sys.argv[-1])
args = task.get("args")
if isinstance(args, dict):
    args = [f"{k}={v}" for k, v in sorted(args.items()) if k != "_EXECUTION_NAME"]
words = " ".join(str(a) for a in args) if isinstance(args, list) else str(args)
print(f"workflow {task['_EXECUTION_NAME']} says hello", file=sys.stderr)
print(json.dumps({"greeting": f"Hello, {words}!"}))
