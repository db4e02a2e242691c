#!/usr/bin/env python3
"""Writes questions.jsonl: the project's own spoken-QA questions (issue 19's offline benchmark).

Every question has one short, unambiguous answer; `answers` lists the accepted forms (the first is
canonical; digits and words for numbers). Written for this project (CC0); no dataset is copied.
One JSON object per line: {"id", "category", "question", "answers"}. Run: python3 data/spoken-qa/make.py
"""
import json
import os

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Austria", "Vienna"),
    ("Hungary", "Budapest"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Mexico", "Mexico City"),
    ("Cuba", "Havana"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("South Korea", "Seoul"),
    ("India", "New Delhi"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Turkey", "Ankara"),
    ("Ukraine", "Kyiv"), ("the Czech Republic", "Prague"), ("Switzerland", "Bern"),
    ("Iceland", "Reykjavik"), ("New Zealand", "Wellington"), ("Ethiopia", "Addis Ababa"),
    ("Nigeria", "Abuja"), ("Morocco", "Rabat"), ("Colombia", "Bogota"), ("Venezuela", "Caracas"),
    ("the Philippines", "Manila"), ("Indonesia", "Jakarta"), ("Saudi Arabia", "Riyadh"),
    ("Scotland", "Edinburgh"), ("Wales", "Cardiff"),
]

NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
             "eighteen", "nineteen", "twenty"]
TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
        80: "eighty", 90: "ninety"}


def words(n):
    if n < 21:
        return NUM_WORDS[n]
    if n < 100:
        t, u = n // 10 * 10, n % 10
        return TENS[t] + ("" if u == 0 else "-" + NUM_WORDS[u])
    if n == 100:
        return "one hundred"
    raise ValueError(n)


def number(n):
    w = words(n)
    return [str(n), w] + ([w.replace("-", " ")] if "-" in w else [])


ARITHMETIC = []
for a, b in [(2, 3), (4, 5), (7, 8), (6, 9), (12, 7), (15, 15), (23, 9), (31, 18), (44, 6), (50, 25),
             (13, 29), (38, 41), (9, 9), (17, 3), (60, 40)]:
    ARITHMETIC.append((f"What is {a} plus {b}?", number(a + b)))
for a, b in [(10, 4), (20, 7), (15, 8), (50, 17), (100, 1), (33, 11), (72, 36), (90, 45), (18, 9), (64, 32)]:
    ARITHMETIC.append((f"What is {a} minus {b}?", number(a - b)))
for a, b in [(3, 4), (5, 6), (7, 7), (8, 9), (6, 4), (9, 3), (12, 5), (11, 8), (10, 10), (4, 25)]:
    ARITHMETIC.append((f"What is {a} times {b}?", number(a * b)))
for a, b in [(12, 3), (20, 4), (81, 9), (56, 7), (100, 5), (45, 9), (64, 8), (90, 10), (36, 6), (99, 11)]:
    ARITHMETIC.append((f"What is {a} divided by {b}?", number(a // b)))

FACTS = [
    # science
    ("What planet is closest to the sun?", ["Mercury"]),
    ("What is the largest planet in our solar system?", ["Jupiter"]),
    ("Which planet is known as the red planet?", ["Mars"]),
    ("What planet has the most famous rings?", ["Saturn"]),
    ("What is the chemical symbol for gold?", ["Au"]),
    ("What is the chemical symbol for iron?", ["Fe"]),
    ("What is the chemical symbol for sodium?", ["Na"]),
    ("What gas do plants absorb from the air?", ["carbon dioxide", "CO2"]),
    ("What gas do humans need to breathe to live?", ["oxygen"]),
    ("What is the freezing point of water in degrees Celsius?", ["0", "zero"]),
    ("What is the boiling point of water in degrees Celsius?", ["100", "one hundred"]),
    ("How many legs does a spider have?", number(8)),
    ("How many legs does an insect have?", number(6)),
    ("What is the hardest natural substance?", ["diamond"]),
    ("What force keeps us on the ground?", ["gravity"]),
    ("What organ pumps blood through the body?", ["the heart", "heart"]),
    ("What is the largest organ of the human body?", ["the skin", "skin"]),
    ("How many bones are in the adult human body?", ["206", "two hundred and six", "two hundred six"]),
    ("What is the closest star to the Earth?", ["the sun", "sun"]),
    ("What is H2O more commonly called?", ["water"]),
    ("What part of the plant makes food from sunlight?", ["the leaves", "leaves", "leaf"]),
    ("What is the center of an atom called?", ["the nucleus", "nucleus"]),
    ("What do bees make?", ["honey"]),
    ("What is the natural satellite of the Earth called?", ["the moon", "moon"]),
    ("How many hearts does an octopus have?", number(3)),
    ("What is the largest mammal in the world?", ["the blue whale", "blue whale"]),
    ("What is the fastest land animal?", ["the cheetah", "cheetah"]),
    ("What is the tallest animal in the world?", ["the giraffe", "giraffe"]),
    ("What animal is known as the king of the jungle?", ["the lion", "lion"]),
    ("What is a baby cat called?", ["a kitten", "kitten"]),
    ("What is a baby dog called?", ["a puppy", "puppy"]),
    ("What is a baby cow called?", ["a calf", "calf"]),
    ("What is a baby sheep called?", ["a lamb", "lamb"]),
    ("What is a group of wolves called?", ["a pack", "pack"]),
    ("Which bird is a symbol of peace?", ["the dove", "dove"]),
    ("What do caterpillars turn into?", ["butterflies", "butterfly", "moths", "moth"]),
    ("What color do you get when you mix blue and yellow?", ["green"]),
    ("What color do you get when you mix red and white?", ["pink"]),
    ("What color do you get when you mix red and yellow?", ["orange"]),
    ("What color do you get when you mix blue and red?", ["purple", "violet"]),
    ("What color is the sky on a clear day?", ["blue"]),
    ("What color are ripe bananas?", ["yellow"]),
    # geography
    ("What is the largest ocean on Earth?", ["the Pacific", "Pacific", "Pacific Ocean"]),
    ("What is the longest river in South America?", ["the Amazon", "Amazon"]),
    ("What is the tallest mountain in the world?", ["Mount Everest", "Everest"]),
    ("What is the largest desert in Africa?", ["the Sahara", "Sahara"]),
    ("On which continent is Egypt?", ["Africa"]),
    ("On which continent is Brazil?", ["South America"]),
    ("On which continent is Japan?", ["Asia"]),
    ("What is the coldest continent?", ["Antarctica"]),
    ("What is the largest country by area?", ["Russia"]),
    ("How many continents are there?", number(7)),
    ("How many oceans are there on Earth?", number(5)),
    ("In which country is the Eiffel Tower?", ["France"]),
    ("In which country are the pyramids of Giza?", ["Egypt"]),
    ("In which city is the Statue of Liberty?", ["New York", "New York City"]),
    ("In which city is the Colosseum?", ["Rome"]),
    ("In which country is the Great Wall?", ["China"]),
    ("In which country is Machu Picchu?", ["Peru"]),
    ("In which country is the Taj Mahal?", ["India"]),
    ("What language is spoken in Brazil?", ["Portuguese"]),
    ("What language is spoken in Mexico?", ["Spanish"]),
    ("What is the currency of Japan?", ["the yen", "yen"]),
    ("What is the currency of the United Kingdom?", ["the pound", "pound", "pound sterling"]),
    ("What is the largest state of the United States by area?", ["Alaska"]),
    ("How many states does the United States have?", number(50)),
    # history and culture
    ("Who was the first president of the United States?", ["George Washington", "Washington"]),
    ("Who wrote Romeo and Juliet?", ["William Shakespeare", "Shakespeare"]),
    ("Who painted the Mona Lisa?", ["Leonardo da Vinci", "da Vinci", "Leonardo"]),
    ("Who developed the theory of relativity?", ["Albert Einstein", "Einstein"]),
    ("Who was the first person to walk on the moon?", ["Neil Armstrong", "Armstrong"]),
    ("In what year did World War Two end?", ["1945", "nineteen forty-five", "nineteen forty five"]),
    ("In what year did humans first land on the moon?", ["1969", "nineteen sixty-nine", "nineteen sixty nine"]),
    ("Who invented the telephone?", ["Alexander Graham Bell", "Graham Bell", "Bell"]),
    ("Who discovered penicillin?", ["Alexander Fleming", "Fleming"]),
    ("Who wrote Pride and Prejudice?", ["Jane Austen", "Austen"]),
    ("What instrument has eighty-eight keys?", ["the piano", "piano"]),
    ("How many strings does a standard guitar have?", number(6)),
    ("How many players are on a soccer team on the field?", number(11)),
    ("How many players are on a basketball team on the court?", number(5)),
    ("In which sport do you score a touchdown?", ["American football", "football"]),
    ("In which sport is the term love used for zero?", ["tennis"]),
    ("What do you call a word that means the opposite of another word?", ["an antonym", "antonym"]),
    ("What is the first letter of the English alphabet?", ["A"]),
    ("What is the last letter of the English alphabet?", ["Z", "zed", "zee"]),
    ("How many letters are in the English alphabet?", number(26)),
    ("How many vowels are in the English alphabet?", number(5)),
    # everyday
    ("How many days are in a week?", number(7)),
    ("How many days are in a leap year?", ["366", "three hundred and sixty-six", "three hundred sixty six"]),
    ("How many months are in a year?", number(12)),
    ("How many hours are in a day?", number(24)),
    ("How many minutes are in an hour?", number(60)),
    ("How many seconds are in a minute?", number(60)),
    ("How many weeks are in a year?", number(52)),
    ("What day comes after Monday?", ["Tuesday"]),
    ("What day comes before Saturday?", ["Friday"]),
    ("What month comes after June?", ["July"]),
    ("What month comes before March?", ["February"]),
    ("What is the first month of the year?", ["January"]),
    ("What is the last month of the year?", ["December"]),
    ("Which month has the fewest days?", ["February"]),
    ("How many sides does a triangle have?", number(3)),
    ("How many sides does a square have?", number(4)),
    ("How many sides does a hexagon have?", number(6)),
    ("How many sides does an octagon have?", number(8)),
    ("How many centimeters are in a meter?", number(100)),
    ("How many grams are in a kilogram?", ["1000", "one thousand", "a thousand"]),
    ("How many meters are in a kilometer?", ["1000", "one thousand", "a thousand"]),
    ("How many inches are in a foot?", number(12)),
    ("How many feet are in a yard?", number(3)),
    ("How many cents are in a dollar?", number(100)),
    ("How many eggs are in a dozen?", number(12)),
    ("How many years are in a century?", number(100)),
    ("How many years are in a decade?", number(10)),
    ("What is half of one hundred?", number(50)),
    ("What is the square root of eighty-one?", number(9)),
    ("What is ten squared?", number(100)),
    ("What is the opposite of hot?", ["cold"]),
    ("What is the opposite of up?", ["down"]),
    ("What is the opposite of day?", ["night"]),
    ("What is the opposite of open?", ["closed", "shut"]),
    ("What is the opposite of early?", ["late"]),
    ("What is the opposite of full?", ["empty"]),
    ("What is the opposite of heavy?", ["light"]),
    ("What is the opposite of north?", ["south"]),
    ("What is the opposite of win?", ["lose"]),
    ("What is the opposite of happy?", ["sad", "unhappy"]),
    ("What season comes after winter?", ["spring"]),
    ("What season comes after summer?", ["autumn", "fall"]),
    ("In which season do leaves fall from the trees?", ["autumn", "fall"]),
    ("What do you call frozen water?", ["ice"]),
    ("What do cows drink?", ["water"]),
    ("What fruit is used to make wine?", ["grapes", "grape"]),
    ("What is the main ingredient in guacamole?", ["avocado", "avocados"]),
    ("What vegetable is used to make french fries?", ["potatoes", "potato"]),
    ("What do you use to write on a blackboard?", ["chalk"]),
    ("What is the color of an emerald?", ["green"]),
    ("What is the color of a ruby?", ["red"]),
    ("What shape has three sides?", ["a triangle", "triangle"]),
    ("What is the largest bone in the human body?", ["the femur", "femur", "thigh bone"]),
    ("What sense does the nose give us?", ["smell"]),
    ("What do you call a person who fixes teeth?", ["a dentist", "dentist"]),
    ("What do you call a person who flies a plane?", ["a pilot", "pilot"]),
    ("What do you call a doctor for animals?", ["a vet", "vet", "veterinarian"]),
    ("What is the name of the toy with a string that goes up and down?", ["a yo-yo", "yo-yo", "yoyo"]),
    ("Which direction does the sun rise in?", ["east", "the east"]),
    ("Which direction does the sun set in?", ["west", "the west"]),
    # more everyday and general knowledge
    ("How many wheels does a bicycle have?", number(2)),
    ("How many wheels does a tricycle have?", number(3)),
    ("How many wheels does a car usually have?", number(4)),
    ("How many fingers are on one human hand?", number(5)),
    ("How many toes does a person usually have?", number(10)),
    ("How many eyes does a person have?", number(2)),
    ("How many teeth does an adult human usually have?", number(32)),
    ("How many chambers does the human heart have?", number(4)),
    ("How many legs does a dog have?", number(4)),
    ("How many legs does a bird have?", number(2)),
    ("How many arms does a starfish usually have?", number(5)),
    ("How many players are on a baseball team on the field?", number(9)),
    ("How many minutes are in a quarter of an hour?", number(15)),
    ("How many hours are in half a day?", number(12)),
    ("How many days are in the month of April?", number(30)),
    ("How many days are in the month of January?", number(31)),
    ("How many sides does a pentagon have?", number(5)),
    ("How many corners does a cube have?", number(8)),
    ("How many faces does a cube have?", number(6)),
    ("How many degrees are in a right angle?", number(90)),
    ("How many degrees are in a full circle?", ["360", "three hundred and sixty", "three hundred sixty"]),
    ("What number comes after nineteen?", number(20)),
    ("What number comes before one hundred?", number(99)),
    ("What is double twelve?", number(24)),
    ("What is a third of thirty?", number(10)),
    ("What is a quarter of one hundred?", number(25)),
    ("What animal says moo?", ["a cow", "cow", "cows"]),
    ("What animal says woof?", ["a dog", "dog", "dogs"]),
    ("What animal says meow?", ["a cat", "cat", "cats"]),
    ("What animal says oink?", ["a pig", "pig", "pigs"]),
    ("What animal says quack?", ["a duck", "duck", "ducks"]),
    ("What animal has a trunk?", ["an elephant", "elephant", "elephants"]),
    ("What animal carries its house on its back?", ["a snail", "snail", "a turtle", "turtle", "a tortoise", "tortoise"]),
    ("What is the only mammal that can truly fly?", ["the bat", "bat", "bats"]),
    ("What animal is famous for changing its color?", ["the chameleon", "chameleon"]),
    ("What do pandas mostly eat?", ["bamboo"]),
    ("What do you call an animal that eats only plants?", ["a herbivore", "herbivore"]),
    ("Where do fish breathe through?", ["gills", "their gills"]),
    ("What do you call a scientist who studies rocks?", ["a geologist", "geologist"]),
    ("What do you call a scientist who studies stars?", ["an astronomer", "astronomer"]),
    ("What is the main language spoken in Australia?", ["English"]),
    ("What is the main language spoken in Argentina?", ["Spanish"]),
    ("What is the main language spoken in Egypt?", ["Arabic"]),
    ("What is the longest river in Africa?", ["the Nile", "Nile"]),
    ("What is the largest island in the world?", ["Greenland"]),
    ("What sea lies between Europe and Africa?", ["the Mediterranean", "Mediterranean", "Mediterranean Sea"]),
    ("What is the capital city of the United States?", ["Washington", "Washington D.C.", "Washington DC"]),
    ("Which country has the largest population in the world?", ["India", "China"]),
    ("On which continent is Kenya?", ["Africa"]),
    ("On which continent is Germany?", ["Europe"]),
    ("On which continent is Canada?", ["North America"]),
    ("Which ocean lies between Europe and North America?", ["the Atlantic", "Atlantic", "Atlantic Ocean"]),
    ("What is the name of the galaxy we live in?", ["the Milky Way", "Milky Way"]),
    ("What is the name of our star?", ["the sun", "sun", "Sol"]),
    ("Which planet is famous for its great red spot?", ["Jupiter"]),
    ("How many planets are in our solar system?", number(8)),
    ("What is the third planet from the sun?", ["Earth", "the Earth"]),
    ("What do you call molten rock that comes out of a volcano?", ["lava"]),
    ("What is the chemical symbol for oxygen?", ["O"]),
    ("What is the chemical symbol for water?", ["H2O"]),
    ("What metal is liquid at room temperature?", ["mercury"]),
    ("What is the opposite of left?", ["right"]),
    ("What is the opposite of fast?", ["slow"]),
    ("What is the opposite of old?", ["new", "young"]),
    ("What is the opposite of big?", ["small", "little"]),
    ("What is the opposite of wet?", ["dry"]),
    ("What is the plural of mouse?", ["mice"]),
    ("What is the plural of child?", ["children"]),
    ("What is the plural of tooth?", ["teeth"]),
    ("What is the past tense of go?", ["went"]),
    ("What is the past tense of eat?", ["ate"]),
    ("What meal do people eat in the morning?", ["breakfast"]),
    ("What do you call the meal eaten in the middle of the day?", ["lunch"]),
    ("What do you use to cut paper?", ["scissors"]),
    ("What do you call a house made of snow blocks?", ["an igloo", "igloo"]),
    ("What is the name of the holiday on the twenty-fifth of December?", ["Christmas"]),
]


def main():
    items = []
    for country, city in CAPITALS:
        items.append(("capital", f"What is the capital of {country}?", [city]))
    for q, a in ARITHMETIC:
        items.append(("arithmetic", q, a))
    for q, a in FACTS:
        items.append(("knowledge", q, a))
    # A question that is also a training sentence would be heard in training: left out.
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "text", "starter-en.txt")) as f:
        train = f.read().lower()
    kept = [it for it in items if it[1].lower() not in train]
    print(f"left out {len(items) - len(kept)} questions that are training sentences")
    items = kept
    seen = set()
    out = os.path.join(here, "questions.jsonl")
    with open(out + ".tmp", "w") as f:
        for i, (cat, q, a) in enumerate(items):
            assert q not in seen, q
            seen.add(q)
            f.write(json.dumps({"id": f"sqa-{i + 1:04d}", "category": cat, "question": q,
                                "answers": a}) + "\n")
    os.replace(out + ".tmp", out)
    print(f"wrote {len(items)} questions to {out}")


if __name__ == "__main__":
    main()
