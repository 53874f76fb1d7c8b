"""One way to run long work: tasks in the store, taken by workers.

Fine-tuning jobs, judge runs and eval runs are tasks of their kinds. A task is queued (:meth:`Tasks.submit`), taken
by one worker process (:class:`Worker`: ``tuneloop worker``, or a one-task worker spawned for it), reports progress
as events, can be cancelled (:meth:`Tasks.cancel`), and survives a restart: a task whose worker died is queued again
and taken up where its code saved its state (:meth:`TaskContext.save_state`). A kind is a function of a
:class:`TaskContext` (:class:`Kind`); ``tuneloop.worker`` holds the table of every kind.

>>> tasks = Tasks(runtime.db, runtime.settings)
>>> task = tasks.submit("judge_run", params={"judge": "helpful"}, title="judge helpful")
>>> tasks.wait(task.id).status                                    # "succeeded"
"""

from tuneloop.store.tasks import ACTIVE, FINISHED, Task, TaskEvent
from tuneloop.tasks.context import Kind, TaskContext, TaskStopped
from tuneloop.tasks.processes import child_environment, on_this_machine, pid_alive, spawned, worker_name
from tuneloop.tasks.runner import Worker
from tuneloop.tasks.service import NOUNS, REMOTE, Tasks, task_log

__all__ = [
    "ACTIVE", "FINISHED", "NOUNS", "REMOTE", "Kind", "Task", "TaskContext", "TaskEvent", "TaskStopped", "Tasks",
    "Worker", "child_environment", "on_this_machine", "pid_alive", "spawned", "task_log", "worker_name",
]
