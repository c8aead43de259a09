"""Model tags: FATE-Flow's ``t_tags`` and ``t_model_tag``, with FATE's answers and without its races.

A tag attaches to a model *version* (FATE's ``f_m_id`` is the job id, which is the version), not to
a party row. The caller resolves the job id to a model first, and passes the model id along only
for the wording of the messages. Unlike FATE, ``t_model_tag`` has a UNIQUE (model_version, tag)
constraint: a tag is added by inserting and letting the database refuse a duplicate, so two
concurrent ``add`` calls cannot both succeed, and a missing tag is created the same way.
"""

from __future__ import annotations

from typing import Any

import peewee

from fate_registry.db import base_model, now_ms
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.registry_pb2 import Tag
from registry_server import paging

MAX_TAG_NAME_LENGTH = 100
"""FATE's ``t_tags.f_name`` is a char(100)."""


class TagStore:
    """Tags and the model versions they are attached to, in the catalog's database."""

    def __init__(self, db: peewee.Database) -> None:
        self.db = db
        base = base_model(db)

        class TagRow(base):  # type: ignore[misc, valid-type]
            name = peewee.CharField(max_length=MAX_TAG_NAME_LENGTH, unique=True)
            description = peewee.TextField(default="")
            create_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_tags"

        class ModelTagRow(base):  # type: ignore[misc, valid-type]
            model_version = peewee.CharField(max_length=255)
            tag = peewee.ForeignKeyField(TagRow, on_delete="CASCADE")
            create_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_model_tag"
                indexes = ((("model_version", "tag"), True),)

        self._tag = TagRow
        self._model_tag = ModelTagRow
        with db.connection_context():
            db.create_tables([TagRow, ModelTagRow])

    def tags_of(self, job_id: str, page_size: int = 0, page_token: str = "") -> tuple[list[Tag], str]:
        """One page of a model version's tags, in the order they were added, and the next page's token."""
        tag, link = self._tag, self._model_tag
        query = tag.select(tag.name, tag.description, link.id.alias("link_id")).join(link, on=link.tag == tag.id)
        query = query.where(link.model_version == job_id)
        if page_token:
            query = query.where(link.id > paging.decode_token(page_token)[0])
        size = paging.page_size(page_size)
        with self.db.connection_context():
            rows = list(query.order_by(link.id).limit(size + 1).dicts())
        token = paging.encode_token(rows[size - 1]["link_id"], "") if len(rows) > size else ""
        return [Tag(name=r["name"], description=r["description"]) for r in rows[:size]], token

    def add(self, job_id: str, tag_name: str, model_id: str) -> str:
        """Tag a model version, creating the tag (without description) if it does not exist yet."""
        _check_name(tag_name)
        tag, link = self._tag, self._model_tag
        try:
            with self.db.connection_context(), self.db.atomic():
                # Both writes or neither: a new tag is created together with its first link.
                tag.insert(name=tag_name, create_time=now_ms()).on_conflict_ignore().execute()
                tag_id = tag.select(tag.id).where(tag.name == tag_name).scalar()
                link.insert(model_version=job_id, tag=tag_id, create_time=now_ms()).execute()
        except peewee.IntegrityError:
            raise RegistryError(
                Reason.MODEL_EXISTS,
                f"Model {model_id} {job_id} already been tagged as tag '{tag_name}'.",
                retcode=Retcode.EXCEPTION_ERROR,
            ) from None
        return f"Adding {tag_name} tag for model with job id: {job_id} successfully."

    def remove(self, job_id: str, tag_name: str, model_id: str) -> str:
        """Untag a model version; the tag itself stays, as in FATE."""
        _check_name(tag_name)
        tag, link = self._tag, self._model_tag
        with self.db.connection_context():
            tag_id = tag.select(tag.id).where(tag.name == tag_name).scalar()
            if tag_id is None:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND, f"Can not found '{tag_name}' tag.", retcode=Retcode.EXCEPTION_ERROR
                )
            # The row count, not an earlier read, tells whether this call removed the link.
            removed = link.delete().where((link.model_version == job_id) & (link.tag == tag_id)).execute()
        if not removed:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Model {model_id} {job_id} does not have tag '{tag_name}'.",
                retcode=Retcode.EXCEPTION_ERROR,
            )
        return f"'{tag_name}' tag has been removed from tag list of model {model_id} {job_id}."

    # -- the tags themselves (FATE's ``flow tag``) --------------------------------------------------------

    def create(self, tag_name: str, description: str) -> str:
        _check_name(tag_name)
        try:
            with self.db.connection_context():
                self._tag.insert(name=tag_name, description=description, create_time=now_ms()).execute()
        except peewee.IntegrityError:
            raise _fate_error(Reason.MODEL_EXISTS, f"'{tag_name}' has already exists in database.") from None
        return f"'{tag_name}' tag has been created successfully."

    def matching(self, text: str) -> list[Tag]:
        """Every tag whose name contains ``text``, FATE's ``tag query`` without models.

        A text longer than any tag name is in none, and is not sent to the database (SQLite refuses a LIKE
        pattern past 50,000 bytes).
        """
        tag = self._tag
        rows = []
        if len(text) <= MAX_TAG_NAME_LENGTH:
            with self.db.connection_context():
                rows = list(tag.select().where(tag.name.contains(text)).order_by(tag.id))
        if not rows:
            raise _fate_error(Reason.MODEL_NOT_FOUND, "No tags found.")
        return [Tag(name=row.name, description=row.description) for row in rows]

    def versions_of(self, tag_name: str) -> list[str]:
        """The model versions carrying the tag named exactly ``tag_name``, in the order they were tagged."""
        link = self._model_tag
        with self.db.connection_context():
            tag_id = self._id_of(tag_name)
            return [
                row.model_version for row in link.select(link.model_version).where(link.tag == tag_id).order_by(link.id)
            ]

    def tagged(self, tag_name: str, version: Any = None) -> Any:
        """A subquery of the model versions carrying the tag named exactly ``tag_name`` (none for an unknown tag).

        ``version``: a column of an outer query; only its version then.
        """
        tag, link = self._tag, self._model_tag
        named = tag.name == tag_name
        query = link.select(link.model_version).join(tag, on=link.tag == tag.id)
        return query.where(named if version is None else named & (link.model_version == version))

    def names_on(self, versions: list[str]) -> dict[str, list[str]]:
        """The names of the tags on each of ``versions`` (that has any), in the order they were added: one query."""
        tag, link = self._tag, self._model_tag
        names: dict[str, list[str]] = {}
        if not versions:
            return names
        query = link.select(link.model_version, tag.name).join(tag, on=link.tag == tag.id)
        with self.db.connection_context():
            for row in query.where(link.model_version.in_(versions)).order_by(link.id).dicts():
                names.setdefault(row["model_version"], []).append(row["name"])
        return names

    def update(self, tag_name: str, new_name: str, new_description: str) -> str:
        """Rename and re-describe a tag; the description is replaced (cleared when empty), as in FATE."""
        if new_name:
            _check_name(new_name)
        tag = self._tag
        with self.db.connection_context(), self.db.atomic():
            row = tag.get_by_id(self._id_of(tag_name))
            if (new_name or row.name) == row.name and new_description == row.description:
                raise _fate_error(Reason.INVALID_ARGUMENT, "Nothing to be updated.")
            try:
                tag.update(name=new_name or row.name, description=new_description).where(tag.id == row.id).execute()
            except peewee.IntegrityError:
                raise _fate_error(Reason.MODEL_EXISTS, f"'{new_name}' tag already exists.") from None
        return f"Infomation of '{tag_name}' tag has been updated successfully."

    def destroy(self, tag_name: str) -> str:
        """Delete a tag and its links to model versions."""
        tag, link = self._tag, self._model_tag
        with self.db.connection_context(), self.db.atomic():
            tag_id = self._id_of(tag_name)
            link.delete().where(link.tag == tag_id).execute()
            tag.delete().where(tag.id == tag_id).execute()
        return f"'{tag_name}' tag has been deleted successfully."

    def first(self, limit: int) -> list[Tag]:
        """The ``limit`` oldest tags, each with the number of model versions it is on."""
        tag, link = self._tag, self._model_tag
        count = peewee.fn.COUNT(link.id)
        query = (
            tag.select(tag.name, tag.description, count.alias("model_count"))
            .join(link, peewee.JOIN.LEFT_OUTER, on=link.tag == tag.id)
            .group_by(tag.id, tag.name, tag.description)
            .order_by(tag.id)
            .limit(limit)
        )
        with self.db.connection_context():
            rows = list(query.dicts())
        return [Tag(name=r["name"], description=r["description"], model_count=r["model_count"]) for r in rows]

    def _id_of(self, tag_name: str) -> int:
        tag_id: int | None = self._tag.select(self._tag.id).where(self._tag.name == tag_name).scalar()
        if tag_id is None:
            raise _fate_error(Reason.MODEL_NOT_FOUND, f"Can not found '{tag_name}' tag.")
        return tag_id


def _fate_error(reason: Reason, message: str) -> RegistryError:
    """FATE-Flow's tag API answers each refusal with retcode 100."""
    return RegistryError(reason, message, retcode=Retcode.EXCEPTION_ERROR)


def _check_name(tag_name: str) -> None:
    """FATE's check lets an absent name through as the tag ``'None'``; here a blank name is refused."""
    if not tag_name or not tag_name.strip():
        raise RegistryError(Reason.INVALID_ARGUMENT, "tag_name must not be empty or blank", {"field": "tag_name"})
    if len(tag_name) > MAX_TAG_NAME_LENGTH:
        raise RegistryError(
            Reason.INVALID_ARGUMENT,
            f"tag_name is {len(tag_name)} characters long; at most {MAX_TAG_NAME_LENGTH} are allowed",
            {"field": "tag_name"},
        )
